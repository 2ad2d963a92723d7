package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/medianest/hub/internal/loadtest"
)

func newBenchCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Load scenarios against real hub nodes; each prints one JSON line",
	}
	var o loadtest.RevokeOptions
	var verbose bool
	revoke := &cobra.Command{
		Use:   "revoke",
		Short: "Revocation latency: N strict-mode sockets on several nodes, revoke sessions, time API call to client disconnect",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := loadtest.RunRevoke(cmd.Context(), o, benchLogger(verbose))
			if err != nil {
				return fmt.Errorf("bench revoke: %w", err)
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	f := revoke.Flags()
	f.IntVar(&o.Nodes, "nodes", 3, "hub nodes")
	f.IntVar(&o.Sockets, "sockets", 10_000, "connected sockets")
	f.IntVar(&o.Revocations, "revocations", 200, "sessions to revoke")
	f.DurationVar(&o.Interval, "interval", 20*time.Millisecond, "pause between revocations")
	f.StringVar(&o.DatabaseURL, "database", "", "database URL (default: SQLite in a temporary directory)")
	f.IntVar(&o.Concurrency, "concurrency", 100, "connects in flight")
	f.BoolVar(&verbose, "verbose", false, "log progress")
	c.AddCommand(revoke)

	var so loadtest.SecurityOptions
	var cpuProfile string
	sec := &cobra.Command{
		Use:   "security",
		Short: "Security worker throughput: events from stream to audit log per second, detections on",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			res, err := loadtest.RunSecurity(cmd.Context(), so, benchLogger(verbose))
			if err != nil {
				return fmt.Errorf("bench security: %w", err)
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	sf := sec.Flags()
	sf.IntVar(&so.Events, "events", 200_000, "security events to process")
	sf.StringVar(&so.DatabaseURL, "database", "", "database URL (default: SQLite in a temporary directory)")
	sf.IntVar(&so.Batch, "batch", 0, "worker batch size (default: the worker's)")
	sf.BoolVar(&verbose, "verbose", false, "log progress")
	sf.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
	c.AddCommand(sec)

	var mo loadtest.MediaOptions
	media := &cobra.Command{
		Use:   "media",
		Short: "Media worker: events per second from stream to emit, and publish-to-client latency",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := loadtest.RunMedia(cmd.Context(), mo, benchLogger(verbose))
			if err != nil {
				return fmt.Errorf("bench media: %w", err)
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	mf := media.Flags()
	mf.IntVar(&mo.Events, "events", 50_000, "download.progress events")
	mf.IntVar(&mo.Downloads, "downloads", 1000, "distinct downloads")
	mf.BoolVar(&mo.Coalesce, "coalesce", false, "coalesce progress at 4 per download per second")
	mf.IntVar(&mo.Rate, "rate", 0, "publish this many events per second (0 = as fast as possible: throughput)")
	mf.IntVar(&mo.Users, "users", 100, "connected users the downloads belong to")
	mf.BoolVar(&verbose, "verbose", false, "log progress")
	c.AddCommand(media)
	return c
}

func benchLogger(verbose bool) zerolog.Logger {
	level := zerolog.WarnLevel
	if verbose {
		level = zerolog.InfoLevel
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly}).Level(level).With().Timestamp().Logger()
}
