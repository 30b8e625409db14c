// Opens the demo page in headless Chromium (Debian's chromium package, driven by playwright-core,
// which brings no browser of its own) and waits until the page shows at least one answered round
// trip and one live event, or until the deadline. Prints one JSON line: what the page showed,
// the requests it tried to make to any other origin (none expected: it must work offline), and
// its script errors. Exit code 0 whenever it could report; the caller judges.
// Usage: node demo_page.js URL [DEADLINE_MS]   (CHROMIUM=path overrides /usr/bin/chromium)
"use strict";
const { chromium } = require("playwright-core");

(async () => {
  const url = process.argv[2];
  const deadline = Number(process.argv[3] || 30000);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    // As root (the test machines) Chromium's sandbox cannot start.
    args: ["--no-sandbox"],
  });
  const context = await browser.newContext();
  const origin = new URL(url).origin;
  const outside = [];
  const errors = [];
  // Anything for another origin is refused and reported: the page must need nothing else.
  await context.route("**/*", (route) => {
    const target = route.request().url();
    if (new URL(target).origin === origin) return route.continue();
    outside.push(target);
    return route.abort();
  });
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push("pageerror: " + e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push("console: " + m.text()); });
  const response = await page.goto(url);
  let shown = false;
  try {
    await page.waitForFunction(() => {
      const n = (id) => Number(document.getElementById(id).textContent);
      return n("rt-count") > 0 && n("ev-count") > 0;
    }, null, { timeout: deadline, polling: 100 });
    shown = true;
  } catch (e) {
    errors.push("wait: " + e.message.split("\n")[0]);
  }
  const report = await page.evaluate(() => {
    const text = (id) => document.getElementById(id).textContent;
    const s = window.demoStats || {};
    return {
      roundTrips: Number(text("rt-count")),
      events: Number(text("ev-count")),
      latency: text("rt-latency"),
      eventLatency: text("ev-latency"),
      socket: text("ws"),
      login: text("login"),
      realtime: text("realtime"),
      firstEvent: (document.querySelector("#ev-list li:last-child") || {}).textContent || null,
      subscribed: s.realtimeSubscribed || null,
    };
  });
  const csp = response ? response.headers()["content-security-policy"] || null : null;
  console.log(JSON.stringify({ shown, status: response && response.status(), csp, outside, errors, ...report }));
  await browser.close();
})().catch((e) => {
  console.log(JSON.stringify({ shown: false, errors: ["driver: " + (e && e.stack || e)] }));
  process.exit(0);
});
