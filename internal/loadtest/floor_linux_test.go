package loadtest

import (
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// loopbackPair is a connected TCP pair on 127.0.0.1 as raw non-blocking
// descriptors: w writes, r reads.
func loopbackPair(b *testing.B) (w, r int) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	server := <-accepted
	dup := func(c net.Conn) int {
		raw, err := c.(syscall.Conn).SyscallConn()
		if err != nil {
			b.Fatal(err)
		}
		fd := -1
		_ = raw.Control(func(s uintptr) { fd, err = unix.Dup(int(s)) })
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
		b.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	return dup(server), dup(client)
}

// BenchmarkLoopbackFloor measures what the kernel charges for one small
// WebSocket frame (130 bytes, a fan-out delivery) over loopback TCP on
// this machine: a write(2) by the hub and a read(2) by the client. The
// hub's and the load tool's CPU per delivery cannot go below these while
// each delivery is its own system call; only several frames per call
// (a burst, or MEDIANEST_WRITE_DELAY) go under them.
func BenchmarkLoopbackFloor(b *testing.B) {
	frame := make([]byte, 130)
	buf := make([]byte, 64<<10)
	for _, per := range []int{1, 10} {
		b.Run(map[int]string{1: "one frame per write and read", 10: "ten frames per write and read"}[per], func(b *testing.B) {
			w, r := loopbackPair(b)
			out := make([]byte, 0, per*len(frame))
			for range per {
				out = append(out, frame...)
			}
			var tw, tr time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := unix.Write(w, out); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				for got := 0; got < len(out); {
					n, err := unix.Read(r, buf)
					if n > 0 {
						got += n
					} else if err != unix.EAGAIN {
						b.Fatal(err)
					}
				}
				tr += time.Since(t1)
				tw += t1.Sub(t0)
			}
			frames := float64(b.N * per)
			b.ReportMetric(float64(tw.Nanoseconds())/frames, "write-ns/frame")
			b.ReportMetric(float64(tr.Nanoseconds())/frames, "read-ns/frame")
		})
	}
}
