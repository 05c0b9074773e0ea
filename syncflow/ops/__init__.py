"""Operations: replay, dead-letter queues, status, reprocess and raw purge, as plain
functions taking Settings and clients; the CLI modules are thin wrappers around them."""
