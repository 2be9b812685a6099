// Browser end-to-end test of examples/chat.rs, run by tests/e2e/run (which installs
// chromium and playwright-core, builds the example and starts it).
//
// Environment:
//   CHAT_URL        the server's page, e.g. http://127.0.0.1:PORT/ (required)
//   SHUTDOWN_AFTER  seconds after which the server was told to shut down (--shutdown-after)
//   SCREENSHOT      where to save page B (default target/e2e/chat.png)
//   COPY_TO         a copy for the README (default examples/chat.png; empty: none)
//
// The server runs with --max-connections 2. Checks, in order: two pages load and connect;
// a message typed on page A shows on both pages, as text (HTML in it is not interpreted);
// B's reply shows on A; a WebSocket handshake from a foreign Origin gets 403; a third
// participant gets 503; closing A shows "<A> left" on B; then the screenshot of B; finally
// the server's graceful shutdown reaches B as close 1001 "server shutting down".

import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";

const TOTAL_TIMEOUT_MS = 50_000; // the whole script
const STEP_TIMEOUT_MS = 10_000; // any single wait

const base = process.env.CHAT_URL;
if (!base) {
  console.error("chat.mjs: set CHAT_URL (tests/e2e/run does)");
  process.exit(2);
}
const shutdownAfter = Number(process.env.SHUTDOWN_AFTER || "0");
const screenshot = process.env.SCREENSHOT || "target/e2e/chat.png";
const copyTo = process.env.COPY_TO ?? "examples/chat.png";
const started = Date.now();

const watchdog = setTimeout(() => {
  console.error(`FAIL: chat.mjs took longer than ${TOTAL_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, TOTAL_TIMEOUT_MS);

let current = "starting";
function step(name) {
  current = name;
  console.log(`- ${name}`);
}

// One WebSocket handshake without a browser; resolves to the HTTP status (101 if upgraded).
function handshake(extraHeaders) {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL("/ws", base), {
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": crypto.randomBytes(16).toString("base64"),
        ...extraHeaders,
      },
      timeout: STEP_TIMEOUT_MS,
    });
    req.on("upgrade", (_res, socket) => {
      socket.destroy();
      resolve(101);
    });
    req.on("response", (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on("timeout", () => req.destroy(new Error("no answer to the handshake")));
    req.on("error", reject);
    req.end();
  });
}

// Waits until a line of #messages has exactly `text` as its text; on a timeout, says what
// the page showed instead.
async function waitForLine(page, selector, text) {
  try {
    await page.waitForFunction(
      ([sel, want]) =>
        [...document.querySelectorAll(sel)].some((li) => li.textContent === want),
      [selector, text],
      { timeout: STEP_TIMEOUT_MS },
    );
  } catch (e) {
    const shown = await page
      .evaluate(() => ({
        status: document.getElementById("status").textContent,
        lines: [...document.querySelectorAll("#messages li")].map((li) => li.textContent),
      }))
      .catch(() => null);
    throw new Error(
      `no line ${JSON.stringify(text)} (${selector}) within ${STEP_TIMEOUT_MS / 1000} s; ` +
        `the page showed ${JSON.stringify(shown)}`,
      { cause: e },
    );
  }
}

async function openChat(context, label, errors) {
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(`${label}: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`${label} console: ${m.text()}`);
  });
  const response = await page.goto(base, { timeout: STEP_TIMEOUT_MS });
  assert.equal(response.status(), 200, `${label}: GET / status`);
  await page.waitForSelector('#status[data-state="open"]', { timeout: STEP_TIMEOUT_MS });
  const status = await page.textContent("#status");
  const name = status.match(/connected as (\S+)/)?.[1];
  assert.ok(name, `${label}: no name in the status line ${JSON.stringify(status)}`);
  return { page, name };
}

async function send(page, text) {
  if (await page.isDisabled("#input")) {
    const status = await page.textContent("#status");
    throw new Error(`cannot type: the input box is disabled (status: ${JSON.stringify(status)})`);
  }
  await page.fill("#input", text);
  await page.click("#send");
}

async function main() {
  step("launch chromium");
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
    timeout: STEP_TIMEOUT_MS,
  });
  try {
    const context = await browser.newContext({ viewport: { width: 760, height: 440 } });
    context.setDefaultTimeout(STEP_TIMEOUT_MS);
    const errors = [];

    step("open page A and page B; both connect");
    const a = await openChat(context, "A", errors);
    const b = await openChat(context, "B", errors);
    assert.notEqual(a.name, b.name, "the two participants got the same name");
    await waitForLine(a.page, "#messages li.notice", `${b.name} joined`);

    step("a message typed on A shows on B and on A, as text");
    const hello = 'Hello from A: <b>not bold</b> & "quoted"';
    await send(a.page, hello);
    await waitForLine(b.page, "#messages li.msg", `${a.name}: ${hello}`);
    await waitForLine(a.page, "#messages li.msg.mine", `${a.name}: ${hello}`);
    assert.equal(await b.page.locator("#messages b").count(), 0, "HTML in a message was parsed");
    assert.equal(await a.page.inputValue("#input"), "", "A's input box was not cleared");

    step("B replies; A sees it");
    const reply = "Hi A! The tags above came through as text.";
    await send(b.page, reply);
    await waitForLine(a.page, "#messages li.msg", `${b.name}: ${reply}`);
    await waitForLine(b.page, "#messages li.msg.mine", `${b.name}: ${reply}`);
    const bye = "Great. Closing my tab now, bye!";
    await send(a.page, bye);
    await waitForLine(b.page, "#messages li.msg", `${a.name}: ${bye}`);

    step("a handshake from a foreign Origin is refused with 403");
    assert.equal(await handshake({ Origin: "http://evil.example" }), 403);
    const host = new URL(base).host;
    assert.equal(await handshake({ Origin: `https://${host}` }), 403, "https origin accepted");

    step("a third participant gets 503 (--max-connections 2)");
    assert.equal(await handshake({}), 503);

    step("closing A shows A's leave notice on B");
    await a.page.close({ runBeforeUnload: false });
    await waitForLine(b.page, "#messages li.notice", `${a.name} left`);
    const users = await b.page.textContent("#users");
    assert.equal(users, `1 online: ${b.name}`, "B's list of participants");

    step(`screenshot of B -> ${screenshot}`);
    assert.equal(
      await b.page.getAttribute("#status", "data-state"),
      "open",
      "the server shut down before the test got here; raise SHUTDOWN_AFTER",
    );
    fs.mkdirSync(path.dirname(screenshot), { recursive: true });
    await b.page.screenshot({ path: screenshot });
    if (copyTo) {
      fs.copyFileSync(screenshot, copyTo);
      console.log(`  copied to ${copyTo}`);
    }

    if (shutdownAfter > 0) {
      step("the server's graceful shutdown reaches B as close 1001");
      const left = shutdownAfter * 1000 - (Date.now() - started);
      await b.page.waitForSelector('#status[data-state="closed"]', {
        timeout: Math.max(left, 0) + STEP_TIMEOUT_MS,
      });
      const status = await b.page.textContent("#status");
      assert.equal(status, "disconnected (server shutting down, 1001)");
    }

    assert.deepEqual(errors, [], "errors in the pages");
    await context.close();
  } finally {
    await browser.close();
  }
}

try {
  await main();
  clearTimeout(watchdog);
  console.log(`chat.mjs: all checks passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (e) {
  console.error(`FAIL: ${current}: ${e.message}`);
  process.exit(1);
}
