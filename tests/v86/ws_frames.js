// A WebSocket peer for usernet's tests, speaking v86's relay protocol (one
// binary message per Ethernet frame) with the `ws` package, a client
// independent of usernet's own WebSocket code.
//
//   node ws_frames.js URL [ORIGIN]
//
// stdin:  one command per line:
//           HEX     send these bytes as one binary message
//           TEXT s  send s as a text message
//           CLOSE   close the connection (code 1000)
// stdout: one JSON object per line:
//           {"event":"open"}
//           {"event":"frame","hex":"..."}   a binary message received
//           {"event":"text","data":"..."}   a text message received
//           {"event":"close","code":N,"reason":"..."}
//           {"event":"error","message":"..."}  (e.g. "Unexpected server response: 403")
// Exits when the connection closes.
"use strict";
const WebSocket = require("ws");
const readline = require("readline");

const [url, origin] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const ws = new WebSocket(url, origin ? { origin } : {});
ws.binaryType = "nodebuffer";
const pending = [];
let open = false;

const send = (line) => {
    if (line === "CLOSE") ws.close(1000);
    else if (line.startsWith("TEXT ")) ws.send(line.slice(5));
    else if (line.length) ws.send(Buffer.from(line, "hex"), { binary: true });
};

ws.on("open", () => {
    open = true;
    out({ event: "open" });
    for (const l of pending.splice(0)) send(l);
});
ws.on("message", (data, isBinary) => {
    if (isBinary) out({ event: "frame", hex: Buffer.from(data).toString("hex") });
    else out({ event: "text", data: data.toString() });
});
ws.on("close", (code, reason) => {
    out({ event: "close", code, reason: reason.toString() });
    process.exit(0);
});
ws.on("error", (e) => {
    out({ event: "error", message: e.message });
    process.exit(1);
});
readline.createInterface({ input: process.stdin }).on("line", (line) => {
    line = line.trim();
    if (open) send(line);
    else pending.push(line);
});
