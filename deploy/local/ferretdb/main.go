// ferretdb-runner serves the MongoDB wire protocol on a TCP address from a SQLite
// directory, using FerretDB's embeddable API (the upstream command panics when
// built from the module proxy because its version file is missing).
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	dir := flag.String("data", "", "SQLite data directory (must exist)")
	flag.Parse()
	if *dir == "" {
		log.Fatal("-data is required")
	}
	url := "file:" + *dir
	if url[len(url)-1] != '/' {
		url += "/"
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *addr},
		Handler:   "sqlite",
		SQLiteURL: url,
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Printf("ferretdb listening on %s, data in %s", *addr, *dir)
	if err := f.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}
