"""Running the whole pipeline as its users do: role processes under one supervisor, the
demo, and the reconciliation that proves nothing was lost or duplicated."""
