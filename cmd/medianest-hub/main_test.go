package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/medianest/hub/hub/auth"
	"github.com/medianest/hub/internal/store"
)

const testSecret = "cmd-test-secret-cmd-test-secret-cmd"

func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func run(t *testing.T, lookup func(string) (string, bool), args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd(lookup)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestConfigCheck(t *testing.T) {
	tests := []struct {
		name    string
		env     func(string) (string, bool)
		wantErr string
		wantOut string
	}{
		{"valid", env("MEDIANEST_JWT_SECRET", testSecret), "", "configuration ok"},
		{"missing secret", env(), "MEDIANEST_JWT_SECRET", ""},
		{"two errors at once", env("MEDIANEST_JWT_SECRET", "short", "MEDIANEST_SESSION_MODE", "x"), "MEDIANEST_SESSION_MODE", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(t, tt.env, "config", "check")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !strings.Contains(out, tt.wantOut) {
				t.Fatalf("out %q, err %v", out, err)
			}
		})
	}
}

func TestTokenCommand(t *testing.T) {
	dir := t.TempDir()
	out, err := run(t, env("MEDIANEST_JWT_SECRET", testSecret, "MEDIANEST_DATA_DIR", dir), "token", "--user", "42", "--role", "admin,ops", "--session", "s1", "--ttl", "5m")
	if err != nil {
		t.Fatal(err)
	}
	v, _ := auth.NewVerifier(auth.Config{Secret: []byte(testSecret), Issuer: "medianest", Audience: "medianest-users"})
	id, err := v.Verify(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	if id.UserID != "42" || strings.Join(id.Roles, ",") != "admin,ops" || id.SessionID != "s1" || time.Until(id.ExpiresAt) > 5*time.Minute {
		t.Fatalf("identity = %+v", id)
	}
	// The token's session is stored where strict mode looks it up.
	st, err := store.Open(t.Context(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sess, err := st.SessionByID(t.Context(), "s1")
	if err != nil || sess == nil || sess.UserID != "42" || sess.TokenSHA256 == nil || *sess.TokenSHA256 != id.TokenSHA256 {
		t.Fatalf("stored session = %+v, %v", sess, err)
	}
}

func TestVersion(t *testing.T) {
	out, err := run(t, env(), "version")
	if err != nil || !strings.HasPrefix(out, "medianest-hub ") {
		t.Fatalf("%q %v", out, err)
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// buildBinary builds medianest-hub once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "medianest-hub-test-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "medianest-hub")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// TestBenchRevoke runs the load tool's revocation scenario at a small
// size: it must complete and report every revocation (no timing is
// asserted; figures live in docs/BENCHMARKS.md).
func TestBenchRevoke(t *testing.T) {
	bin := buildBinary(t)
	out, err := exec.Command(bin, "bench", "revoke", "--sockets", "60", "--revocations", "10", "--nodes", "2").Output()
	if err != nil {
		t.Fatalf("bench revoke: %v", err)
	}
	var res struct {
		Scenario string
		Sockets  int
		Missed   int
		Latency  struct{ Count int } `json:"revoke_to_disconnect"`
		Collat   int                 `json:"collateral_disconnects"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if res.Scenario != "revoke" || res.Sockets != 60 || res.Latency.Count != 10 || res.Missed != 0 || res.Collat != 0 {
		t.Fatalf("result = %s", out)
	}
}

// TestBenchScenarios runs the other scenarios at a small size: each must
// complete and account for every message (no timing is asserted).
func TestBenchScenarios(t *testing.T) {
	bin := buildBinary(t)
	tests := []struct {
		name  string
		args  []string
		check func(map[string]any) bool
	}{
		{"fanout", []string{"bench", "fanout", "--subscribers", "20", "--rate", "20", "--duration", "1s"},
			func(r map[string]any) bool { return r["lost"] == 0.0 && r["delivered"] == 400.0 }},
		{"media", []string{"bench", "media", "--events", "500", "--users", "5"},
			func(r map[string]any) bool { return r["delivered_to_client"] == 500.0 }},
		{"security", []string{"bench", "security", "--events", "2000"},
			func(r map[string]any) bool { return r["stored"] == 2000.0 }},
		{"connect", []string{"bench", "connect", "--connections", "100"},
			func(r map[string]any) bool { return r["failed"] == 0.0 && r["connections"] == 100.0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command(bin, tt.args...).Output()
			if err != nil {
				t.Fatalf("%v: %v", tt.args, err)
			}
			var r map[string]any
			if err := json.Unmarshal(bytes.TrimSpace(out), &r); err != nil || !tt.check(r) {
				t.Fatalf("result %s (%v)", out, err)
			}
		})
	}
}

// TestServeDevDrainsOnSIGTERM runs the real binary: --dev prints tokens and
// a snippet, a client connects, SIGTERM closes it with "going away" and the
// process exits cleanly, and no token or secret reaches the log.
func TestServeDevDrainsOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	bin := buildBinary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	cmd := exec.Command(bin, "serve", "--dev", "--listen", addr)
	cmd.Env = append(os.Environ(), "MEDIANEST_DATA_DIR="+filepath.Join(dir, "data"), "MEDIANEST_LOG_FORMAT=json", "MEDIANEST_LOG_LEVEL=debug")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	var banner strings.Builder
	var userToken string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		banner.WriteString(line + "\n")
		if tok, ok := strings.CutPrefix(strings.TrimSpace(line), "user token:"); ok {
			userToken = strings.TrimSpace(tok)
		}
		if strings.HasPrefix(line, "socket.on(") {
			break
		}
	}
	if userToken == "" || !strings.Contains(banner.String(), `io("http://localhost:`) {
		t.Fatalf("banner:\n%s", banner.String())
	}

	var ws *websocket.Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		ws, _, err = websocket.DefaultDialer.Dial("ws://"+addr+"/socket.io/?EIO=4&transport=websocket&token="+userToken, nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer ws.Close()
	_, _, _ = ws.ReadMessage() // open
	_ = ws.WriteMessage(websocket.TextMessage, []byte("40/media,"))
	if _, m, err := ws.ReadMessage(); err != nil || !strings.HasPrefix(string(m), "40/media,") {
		t.Fatalf("connect with the printed token: %q %v", m, err)
	}
	// A token in a query string is redacted from the access log.
	resp, err := http.Get("http://" + addr + "/readyz?token=" + userToken)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	resp.Body.Close()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := ws.ReadMessage()
		if err == nil {
			continue // the welcome event, pings
		}
		if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
			t.Fatalf("client saw %v, want a going-away close", err)
		}
		break
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("process did not exit after SIGTERM")
	}
	logs := stderr.String()
	if strings.Contains(logs, userToken) || strings.Contains(logs, userToken[len(userToken)-20:]) {
		t.Fatalf("the log contains a token:\n%s", logs)
	}
	if !strings.Contains(logs, "token=REDACTED") || !strings.Contains(logs, "shutting down") {
		t.Fatalf("unexpected log:\n%s", logs)
	}
}
