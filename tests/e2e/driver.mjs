// A line-oriented driver for the real socket.io-client, used by the Go
// end-to-end tests: it reads one JSON command per line on stdin and writes
// one JSON report per line on stdout.
import { Manager } from "socket.io-client";
import WebSocket from "ws";
import readline from "node:readline";

const managers = new Map();
const sockets = new Map();
const raws = new Map();

function out(msg) {
  process.stdout.write(JSON.stringify(msg) + "\n");
}

function manager(cmd) {
  const key = cmd.manager || cmd.id;
  let m = managers.get(key);
  if (!m) {
    m = new Manager(cmd.url, {
      transports: cmd.transports || ["websocket"],
      reconnection: cmd.reconnection ?? false,
      extraHeaders: cmd.headers || {},
      query: cmd.query || {},
      timeout: 5000,
    });
    managers.set(key, m);
  }
  return m;
}

function connect(cmd) {
  const m = manager(cmd);
  const s = m.socket(cmd.ns || "/", cmd.auth ? { auth: cmd.auth } : {});
  sockets.set(cmd.id, s);
  s.on("connect", () => out({ id: cmd.id, type: "connect", sid: s.id }));
  s.on("connect_error", (err) => out({ id: cmd.id, type: "connect_error", message: err.message, data: err.data ?? null }));
  s.on("disconnect", (reason) => out({ id: cmd.id, type: "disconnect", reason }));
  s.onAny((event, ...args) => {
    const last = args[args.length - 1];
    if (typeof last === "function") {
      args.pop();
      last({ received: event });
    }
    out({ id: cmd.id, type: "event", event, args });
  });
  if (!s.connected && !s.active) s.connect();
}

function emit(cmd) {
  const s = sockets.get(cmd.id);
  if (!s) return out({ id: cmd.id, type: "error", message: "no such socket" });
  const args = cmd.args || [];
  if (cmd.ack) {
    s.timeout(cmd.timeout || 8000).emit(cmd.event, ...args, (err, ...res) => {
      out({ id: cmd.id, type: "ack", seq: cmd.seq, err: err ? err.message : null, args: res });
    });
  } else {
    s.emit(cmd.event, ...args);
  }
}

function raw(cmd) {
  const ws = new WebSocket(cmd.url, { headers: cmd.headers || {} });
  raws.set(cmd.id, ws);
  ws.on("open", () => out({ id: cmd.id, type: "raw_open" }));
  ws.on("message", (data, isBinary) => out({ id: cmd.id, type: "raw", data: isBinary ? "<binary>" : data.toString() }));
  ws.on("close", (code, reason) => out({ id: cmd.id, type: "raw_close", code, reason: reason.toString() }));
  ws.on("error", (err) => out({ id: cmd.id, type: "raw_error", message: err.message }));
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    return out({ type: "error", message: "bad command: " + e.message });
  }
  switch (cmd.op) {
    case "connect":
      return connect(cmd);
    case "emit":
      return emit(cmd);
    case "disconnect":
      sockets.get(cmd.id)?.disconnect();
      return;
    case "reconnect":
      sockets.get(cmd.id)?.connect();
      return;
    case "raw":
      return raw(cmd);
    case "raw_send": {
      const ws = raws.get(cmd.id);
      if (cmd.binary) ws?.send(Buffer.from(cmd.data, "base64"));
      else ws?.send(cmd.data);
      return;
    }
    case "exit":
      for (const m of managers.values()) m.engine?.close();
      process.exit(0);
  }
});
rl.on("close", () => process.exit(0));
out({ type: "ready" });
