import { mkdir } from "node:fs/promises"
import * as path from "node:path"
import type { Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createClient } from "../../src/Client"
import type { ChatLine } from "../../examples/chat/protocol"
import { Join, Said, Say } from "../../examples/chat/protocol"
import type { Chromium } from "./chromium"
import { launchChromium } from "./chromium"
import type { DevServer } from "./devServer"
import { root, startDevServer } from "./devServer"

const wait = { timeout: 15_000 }

let server: DevServer | undefined
let browser: Chromium | undefined
const pageErrors: Array<string> = []

beforeAll(async () => {
  server = await startDevServer()
  browser = await launchChromium()
})

afterAll(async () => {
  await browser?.close()
  await server?.stop()
})

const open = async (room: string): Promise<Page> => {
  const page = await browser!.context.newPage()
  page.on("pageerror", (error) => void pageErrors.push(error.message))
  await page.goto(`${server!.url}/?room=${room}`, wait)
  await page.locator("#status[data-state=open]").waitFor(wait)
  return page
}

const join = async (page: Page, name: string) => {
  await page.fill("#name", name)
  await page.click("#join")
  await page.locator("#say-form").waitFor({ state: "visible", ...wait })
}

const say = async (page: Page, text: string) => {
  await page.fill("#text", text)
  await page.press("#text", "Enter")
}

// Confirmed lines only: a line said on this page shows as pending until the server confirms it.
const line = (page: Page, text: string) => page.locator("#messages li:not(.notice):not(.pending) .text", { hasText: text })

const texts = (page: Page) => page.locator("#messages li:not(.notice):not(.pending) .text").allTextContents()

describe("the chat example in Chromium", () => {
  it("lets two tabs talk, shows presence and typing, and keeps history across a reload", async () => {
    // Each run starts wrangler on fresh storage, so the room starts empty.
    const room = "lobby"
    const ada = await open(room)
    const grace = await open(room)
    await join(ada, "Ada")
    await join(grace, "Grace")
    await ada.locator("#members li", { hasText: "Grace" }).waitFor(wait)
    // Grace's own entry reaches her page in the same presence diff: poll, the pages are separate.
    await expect.poll(() => grace.locator("#members li").allTextContents(), wait).toEqual(["Ada", "Grace (you)"])

    await say(ada, "Hello from Ada")
    await line(grace, "Hello from Ada").waitFor(wait)
    await say(grace, "Hi Ada, Grace here")
    await line(ada, "Hi Ada, Grace here").waitFor(wait)

    // The reloaded tab joins again by itself and gets the room's history.
    await ada.reload(wait)
    await ada.locator("#status[data-state=open]").waitFor(wait)
    await line(ada, "Hi Ada, Grace here").waitFor(wait)
    expect(await texts(ada)).toEqual(["Hello from Ada", "Hi Ada, Grace here"])
    expect(await ada.locator("#messages li.mine .text").allTextContents()).toEqual(["Hello from Ada"])
    await ada.locator("#members li", { hasText: "Grace" }).waitFor(wait)

    await say(ada, "Back after a reload: the history survived")
    await line(grace, "Back after a reload").waitFor(wait)
    await grace.fill("#text", "Nice")
    await grace.dispatchEvent("#text", "input")
    await ada.locator("#typing", { hasText: "Grace is typing" }).waitFor(wait)

    // Every run leaves a screenshot in test-results/; `npm run screenshot` refreshes the README's.
    const shot = process.env["UPDATE_SCREENSHOT"] === "1" ? "docs/chat.png" : "test-results/chat.png"
    await mkdir(path.dirname(path.join(root, shot)), { recursive: true })
    await ada.screenshot({ path: path.join(root, shot) })

    await grace.close()
    await ada.locator("#messages li.notice", { hasText: "Grace left" }).waitFor(wait)
    expect(await ada.locator("#members li").allTextContents()).toEqual(["Ada (you)"])
    expect(pageErrors).toEqual([])
  })

  it("answers a page's bare ws.close() at once, and the close is clean", async () => {
    const page = await browser!.context.newPage()
    await page.goto(`${server!.url}/?room=bare-close`, wait)
    const closed = await page.evaluate(async (url) => {
      const ws = new WebSocket(url)
      await new Promise((resolve, reject) => {
        ws.onopen = resolve
        ws.onerror = reject
      })
      const event = await new Promise<CloseEvent>((resolve, reject) => {
        ws.onclose = resolve
        setTimeout(() => reject(new Error("no close within 3 s")), 3000)
        ws.close()
      })
      return { code: event.code, wasClean: event.wasClean }
    }, `${server!.url.replace("http:", "ws:")}/ws?room=bare-close`)
    await page.close()
    expect(closed).toEqual({ code: 1005, wasClean: true })
  })

  it("keeps every line typed as fast as one can, past the room's rate limit: 45 of 45, in order, in both pages", async () => {
    const room = "fast-typist"
    const ada = await open(room)
    const grace = await open(room)
    await join(ada, "Ada")
    await join(grace, "Grace")
    const typed = Array.from({ length: 45 }, (_, i) => `fast ${i + 1}`)
    for (const text of typed) {
      // Typing fires input events (typing notices) as a person's keystrokes would.
      await ada.fill("#text", text)
      await ada.dispatchEvent("#text", "input")
      await ada.press("#text", "Enter")
    }
    // Every line is on Ada's page at once, visibly pending until the server confirms it.
    expect(await ada.locator("#messages li:not(.notice) .text").count()).toBeGreaterThanOrEqual(45)
    for (const page of [ada, grace]) {
      await line(page, "fast 45").waitFor({ timeout: 60_000 })
      expect((await texts(page)).filter((text) => text.startsWith("fast "))).toEqual(typed)
    }
    expect(await ada.locator("#messages li.pending").count()).toBe(0)
    expect(await ada.locator("#messages li.failed").count()).toBe(0)
    await ada.close()
    await grace.close()
  })

  it("talks with a Node client on Node's global WebSocket", async () => {
    const room = "node"
    const client = createClient({ url: `${server!.url.replace("http:", "ws:")}/ws?room=${room}` })
    try {
      const heard: Array<ChatLine> = []
      client.on(Said, (line) => void heard.push(line))
      await client.connect()
      const joined = await client.request(Join, { name: "Node" }, { timeoutMs: 10_000 })
      expect(joined.history).toEqual([])
      await client.request(Say, { text: "Hello from Node" }, { timeoutMs: 10_000 })

      const page = await open(room)
      await join(page, "Browser")
      await line(page, "Hello from Node").waitFor(wait)
      await say(page, "Hello back from the browser")
      await expect.poll(() => heard.map((l) => l.text), wait).toEqual(["Hello from Node", "Hello back from the browser"])
      expect(heard[1]!.sentAt).toBeInstanceOf(Date)
      expect(heard[1]!.name).toBe("Browser")
      await page.close()
    } finally {
      client.close()
    }
  })

  it("keeps every line through a restart under two tabs while a Node client keeps talking; a reload resumes too", async () => {
    const room = "deploy"
    const ada = await open(room)
    const grace = await open(room)
    await join(ada, "Ada")
    await join(grace, "Grace")
    const talker = createClient({ url: `${server!.url.replace("http:", "ws:")}/ws?room=${room}`, recovery: true })
    try {
      await talker.connect()
      await talker.request(Join, { name: "Talker" }, { timeoutMs: 10_000 })
      await ada.locator("#members li", { hasText: "Talker" }).waitFor(wait)
      await grace.locator("#members li", { hasText: "Talker" }).waitFor(wait)
      const expected: Array<string> = []
      // Each line is an rpc: queued while the server is down, resent after the resume, answered once.
      const heard: Array<Promise<unknown>> = []
      const talk = (text: string) => {
        heard.push(talker.request(Say, { text }, { timeoutMs: 60_000 }))
        expected.push(text)
      }
      for (let i = 1; i <= 3; i++) talk(`before ${i}`)
      await line(ada, "before 3").waitFor(wait)
      await line(grace, "before 3").waitFor(wait)
      const noticesBefore = await ada.locator("#messages li.notice").allTextContents()
      const membersBefore = await ada.locator("#members li").allTextContents()

      const { port, persistTo } = server!
      await server!.stop({ keepStorage: true })
      await ada.locator("#status[data-state=reconnecting]").waitFor(wait)
      await grace.locator("#status[data-state=reconnecting]").waitFor(wait)
      // Queued by the client while the server is down, sent once it is back.
      for (let i = 1; i <= 3; i++) talk(`during ${i}`)

      server = await startDevServer({ port, persistTo })
      for (const page of [ada, grace]) {
        await page.locator("#status[data-state=open]").waitFor({ timeout: 30_000 })
        await page.locator("#messages li.notice", { hasText: "reconnected" }).waitFor({ timeout: 30_000 })
      }
      for (let i = 1; i <= 3; i++) talk(`after ${i}`)
      expect(await Promise.all(heard)).toHaveLength(9)
      for (const page of [ada, grace]) {
        await line(page, "after 3").waitFor(wait)
        expect(await texts(page)).toEqual(expected)
        expect(await page.locator("#messages li.notice", { hasText: /joined|left/ }).count()).toBeGreaterThan(0)
      }
      expect(await ada.locator("#messages li.notice").allTextContents()).toEqual([...noticesBefore, "reconnected"])
      expect(await ada.locator("#members li").allTextContents()).toEqual(membersBefore)

      // A reload resumes the tab's session: the others hear neither a leave nor a join.
      await grace.reload(wait)
      await grace.locator("#status[data-state=open]").waitFor(wait)
      await line(grace, "after 3").waitFor(wait)
      talk("after the reload")
      await line(grace, "after the reload").waitFor(wait)
      await line(ada, "after the reload").waitFor(wait)
      await expect.poll(() => grace.locator("#members li").allTextContents(), wait).toEqual(["Ada", "Grace (you)", "Talker"])
      expect(await ada.locator("#messages li.notice").allTextContents()).toEqual([...noticesBefore, "reconnected"])
      expect(await ada.locator("#members li").allTextContents()).toEqual(membersBefore)
      expect(await texts(ada)).toEqual(expected)
      await grace.close()
      await ada.close()
    } finally {
      talker.close()
    }
  })

  it("reconnects after the server restarts and sends what was typed meanwhile", async () => {
    const room = "restart"
    const page = await open(room)
    await join(page, "Ada")
    await say(page, "Before the restart")
    await line(page, "Before the restart").waitFor(wait)

    const { port, persistTo } = server!
    await server!.stop({ keepStorage: true })
    await page.locator("#status[data-state=reconnecting]").waitFor(wait)
    await say(page, "Sent while the server was down")
    expect(await page.inputValue("#text")).toBe("")

    server = await startDevServer({ port, persistTo })
    await page.locator("#status[data-state=open]").waitFor({ timeout: 30_000 })
    await line(page, "Sent while the server was down").waitFor(wait)
    expect(await texts(page)).toEqual(["Before the restart", "Sent while the server was down"])
    expect(await page.locator("#members li").allTextContents()).toEqual(["Ada (you)"])
    await page.close()
  })

  it("lets the room's host remove a member, whose page says so and stays away", async () => {
    const room = "kick"
    const ada = await open(room)
    const grace = await open(room)
    await join(ada, "Ada")
    await join(grace, "Grace")
    await ada.locator("#members li", { hasText: "Grace" }).waitFor(wait)
    await say(ada, "/kick Grace")
    await grace.locator("#messages li.notice", { hasText: "You were removed from the room (Removed by Ada)" }).waitFor(wait)
    await grace.locator("#status[data-state=closed]").waitFor(wait)
    await ada.locator("#messages li.notice", { hasText: "Grace left" }).waitFor(wait)
    expect(await ada.locator("#members li").allTextContents()).toEqual(["Ada (you)"])
    // A reconnect would have shown within the client's first backoff steps.
    await grace.waitForTimeout(1500)
    expect(await grace.locator("#status").getAttribute("data-state")).toBe("closed")
    expect(await grace.locator("#say-form").isHidden()).toBe(true)
    expect(await ada.locator("#members li").allTextContents()).toEqual(["Ada (you)"])
    // The command never became a chat line.
    expect(await texts(ada)).toEqual([])
    await grace.close()
    await ada.close()
  })

  it("shows two tabs of one user as one member, who leaves with the last tab, and leaves no ghost after a restart", async () => {
    const room = "presence"
    const members = (page: Page) => page.locator("#members li").allTextContents()
    // The list follows presence diffs, which come a moment after each join: wait for it to settle.
    const membersAre = (page: Page, expected: Array<string>) =>
      expect.poll(() => members(page), { timeout: wait.timeout }).toEqual(expected)
    const ada1 = await open(room)
    const ada2 = await open(room)
    const grace = await open(room)
    await join(ada1, "Ada")
    await join(ada2, "Ada")
    await join(grace, "Grace")
    await membersAre(grace, ["Ada", "Grace (you)"])
    await membersAre(ada1, ["Ada (you)", "Grace"])
    await membersAre(ada2, ["Ada (you)", "Grace"])

    // One tab closes: the other keeps Ada in the room, also past the room's 5 s hold of a dropped tab.
    await ada1.close()
    await grace.waitForTimeout(6500)
    expect(await members(grace)).toEqual(["Ada", "Grace (you)"])
    expect(await grace.locator("#messages li.notice", { hasText: "Ada left" }).count()).toBe(0)
    await ada2.close()
    await grace.locator("#messages li.notice", { hasText: "Ada left" }).waitFor(wait)
    await membersAre(grace, ["Grace (you)"])

    // A restart: Linus's tab goes away while the server is down, so his socket never comes back.
    const linus = await open(room)
    await join(linus, "Linus")
    await membersAre(grace, ["Grace (you)", "Linus"])
    const { port, persistTo } = server!
    await server!.stop({ keepStorage: true })
    await linus.close()
    server = await startDevServer({ port, persistTo })
    await grace.locator("#status[data-state=open]").waitFor({ timeout: 30_000 })
    await grace.locator("#messages li.notice", { hasText: "Linus left" }).waitFor(wait)
    await membersAre(grace, ["Grace (you)"])
    await grace.close()
    expect(pageErrors).toEqual([])
  })

  it("loads older history with a progress bar", async () => {
    const room = "older"
    // With recovery, a connection that drops under a loaded machine resumes as the member it was,
    // so the lines queued meanwhile are still a member's.
    const client = createClient({ url: `${server!.url.replace("http:", "ws:")}/ws?room=${room}`, recovery: true })
    try {
      await client.connect()
      await client.request(Join, { name: "Seeder" }, { timeoutMs: 10_000 })
      // The room's rate limit holds 20 frames and refills 5 a second.
      const heard: Array<Promise<unknown>> = []
      for (let i = 1; i <= 33; i++) {
        heard.push(client.request(Say, { text: `line ${i}` }, { timeoutMs: 30_000 }))
        if (i > 15) await new Promise((resolve) => setTimeout(resolve, 230))
      }
      await Promise.all(heard)
      await client.request(Join, { name: "Seeder" }, { timeoutMs: 10_000 })
    } finally {
      client.close()
    }
    const page = await open(room)
    await join(page, "Reader")
    await line(page, "line 33").waitFor(wait)
    expect((await texts(page)).length).toBe(20)
    expect((await texts(page))[0]).toBe("line 14")
    await page.evaluate(() => {
      const status = document.getElementById("older-status")!
      const seen: Array<string> = []
      ;(window as unknown as { olderSeen: Array<string> }).olderSeen = seen
      new MutationObserver((records) => {
        for (const record of records) for (const node of record.addedNodes) seen.push(node.textContent ?? "")
      }).observe(status, { childList: true })
    })
    await page.click("#load-older")
    await page.locator("#older-status", { hasText: "Loaded 13 older messages" }).waitFor(wait)
    const seen = await page.evaluate(() => (window as unknown as { olderSeen: Array<string> }).olderSeen)
    expect(seen).toEqual([
      "Loading older messages…",
      "Loading older messages… 10/13",
      "Loading older messages… 13/13",
      "Loaded 13 older messages"
    ])
    expect(await texts(page)).toEqual(Array.from({ length: 33 }, (_, i) => `line ${i + 1}`))
    expect(await page.locator("#older-bar").isHidden()).toBe(true)
    await page.close()
  })
})
