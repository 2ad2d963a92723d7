// Command medianest-hub is MediaNest's realtime hub: `serve` runs every
// component in one process; `token`, `config check` and `version` help
// develop and operate it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd(os.LookupEnv).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "medianest-hub:", err)
		os.Exit(1)
	}
}
