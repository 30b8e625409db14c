// What every client driver of the integration tests shares: one JSON command per stdin line in,
// one JSON line per event out. `commands(run)` calls `run(cmd)` for each command; a line that is
// not JSON is reported as a `driver_error` event; `{"op":"exit"}` and the end of stdin end the
// process.
"use strict";
const readline = require("readline");

const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

function commands(run) {
  readline.createInterface({ input: process.stdin }).on("line", (line) => {
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (e) {
      out({ event: "driver_error", data: String(e) });
      return;
    }
    if (cmd.op === "exit") process.exit(0);
    run(cmd);
  });
  process.stdin.on("end", () => process.exit(0));
}

module.exports = { out, commands };
