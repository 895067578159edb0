import { env, SELF, evictDurableObject } from "cloudflare:test"
import { expect, it } from "vitest"

it("raw hibernation works", async () => {
  const res = await SELF.fetch("http://x/room1", { headers: { Upgrade: "websocket" } })
  const ws = res.webSocket!
  ws.accept()
  const got: string[] = []
  ws.addEventListener("message", (e) => got.push(e.data as string))
  ws.send("hi")
  await new Promise((r) => setTimeout(r, 100))
  const stub = (env as any).RAW.get((env as any).RAW.idFromName("/room1"))
  await evictDurableObject(stub)
  ws.send("again")
  await new Promise((r) => setTimeout(r, 200))
  console.log(got)
  expect(got.length).toBe(2)
})
