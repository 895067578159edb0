/**
 * The chat page: plain DOM and `durable-ws/client`, sharing the schemas in
 * ../protocol.ts with the Durable Object. Bundled to public/app.js by
 * ../build.mjs.
 */
import { CloseCodes, createClient, ServerError, TimeoutError } from "../../../src/Client"
import type { PresenceChange } from "../../../src/Client"
import * as Schema from "effect/Schema"
import type { ChatLine } from "../protocol"
import {
  Announce,
  Announced,
  Join,
  joinHistory,
  Kick,
  Leave,
  LoadOlder,
  olderLimit,
  PresenceMeta,
  roomTopic,
  Said,
  Say,
  Typing,
  TypingChanged
} from "../protocol"

const element = <T extends HTMLElement>(id: string): T => {
  const found = document.getElementById(id)
  if (found === null) throw new Error(`#${id} is missing from the page`)
  return found as T
}

const room = new URLSearchParams(location.search).get("room") || "lobby"
const nameKey = `durable-ws-chat:name:${room}`
const idsKey = `durable-ws-chat:ids:${room}`

const ui = {
  room: element<HTMLSpanElement>("room-name"),
  status: element<HTMLSpanElement>("status"),
  roomForm: element<HTMLFormElement>("room-form"),
  roomInput: element<HTMLInputElement>("room-input"),
  messages: element<HTMLUListElement>("messages"),
  typing: element<HTMLDivElement>("typing"),
  error: element<HTMLDivElement>("error"),
  joinForm: element<HTMLFormElement>("join-form"),
  name: element<HTMLInputElement>("name"),
  sayForm: element<HTMLFormElement>("say-form"),
  text: element<HTMLInputElement>("text"),
  leave: element<HTMLButtonElement>("leave"),
  members: element<HTMLUListElement>("members"),
  older: element<HTMLDivElement>("older"),
  loadOlder: element<HTMLButtonElement>("load-older"),
  olderBar: element<HTMLProgressElement>("older-bar"),
  olderStatus: element<HTMLSpanElement>("older-status")
}

const client = createClient({
  url: () => {
    const url = new URL("/ws", location.href)
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:"
    url.searchParams.set("room", room)
    return url
  },
  // A dropped connection, a deploy or a reload resumes the session: nothing published meanwhile is lost.
  recovery: true,
  store: sessionStorage
})

/** The name to (re)join with: set by the form, remembered per tab, kept across reconnects. */
let wantedName: string | undefined = sessionStorage.getItem(nameKey) ?? undefined
let joining = false
/** This tab's clientIds (a new one whenever a session could not be resumed), to tell its own lines apart. */
const myIds = new Set<string>(JSON.parse(sessionStorage.getItem(idsKey) ?? "[]") as Array<string>)
const rememberId = (clientId: string) => {
  myIds.add(clientId)
  sessionStorage.setItem(idsKey, JSON.stringify([...myIds].slice(-50)))
}
/** Who is here: the room topic's presence, kept by the client (a member per name, a meta per tab). */
const presence = client.presence(roomTopic)
/** Set while joining: the presence that arrives then is the room as found, not news to announce. */
let announceChanges = false
const typists = new Map<string, { readonly name: string; readonly timer: ReturnType<typeof setTimeout> }>()

// -- Rendering ---------------------------------------------------------------

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" })

const scrollDown = () => {
  ui.messages.scrollTop = ui.messages.scrollHeight
}

const lineItem = (line: ChatLine) => {
  const item = document.createElement("li")
  item.dataset["id"] = String(line.id)
  if (myIds.has(line.clientId)) item.classList.add("mine")
  const who = document.createElement("span")
  who.className = "who"
  who.textContent = line.name
  const text = document.createElement("span")
  text.className = "text"
  text.textContent = line.text
  const time = document.createElement("time")
  time.dateTime = line.sentAt.toISOString()
  time.textContent = timeFormat.format(line.sentAt)
  item.append(who, text, time)
  return item
}

/** Lines said here and not yet confirmed stay below every confirmed line. */
const firstPending = () => ui.messages.querySelector<HTMLLIElement>("li.pending")

const renderLine = (line: ChatLine) => {
  ui.messages.insertBefore(lineItem(line), firstPending())
  scrollDown()
}

const notice = (text: string) => {
  const item = document.createElement("li")
  item.className = "notice"
  item.textContent = text
  ui.messages.insertBefore(item, firstPending())
  scrollDown()
}

const isPresenceMeta = Schema.is(PresenceMeta)

/** Whether one of the member's tabs is this one. */
const isMe = (name: string) =>
  (presence.members[name] ?? []).some(({ meta }) => isPresenceMeta(meta) && myIds.has(meta.clientId))

const renderMembers = () => {
  ui.members.replaceChildren(
    ...Object.keys(presence.members)
      .sort((a, b) => a.localeCompare(b))
      .map((name) => {
        const item = document.createElement("li")
        const mine = isMe(name)
        item.textContent = mine ? `${name} (you)` : name
        if (mine) item.classList.add("me")
        return item
      })
  )
}

const renderTyping = () => {
  const names = [...typists.values()].map((t) => t.name)
  ui.typing.textContent = names.length === 0
    ? ""
    : names.length === 1
    ? `${names[0]} is typing…`
    : `${names.slice(0, -1).join(", ")} and ${names.at(-1)} are typing…`
}

let errorTimer: ReturnType<typeof setTimeout> | undefined
const showError = (error: unknown) => {
  ui.error.textContent = error instanceof ServerError
    ? `${error.message} (${error.code})`
    : error instanceof TimeoutError
    ? "The server did not answer in time"
    : error instanceof Error
    ? error.message
    : String(error)
  clearTimeout(errorTimer)
  errorTimer = setTimeout(() => ui.error.textContent = "", 5000)
}

const setJoined = (joined: boolean) => {
  ui.joinForm.hidden = joined
  ui.sayForm.hidden = !joined
  // The bar shows while there may be older lines, or while it reports a load.
  ui.older.hidden = !joined || (ui.loadOlder.hidden && ui.olderStatus.textContent === "")
  if (joined) ui.text.focus()
  else ui.name.focus()
}

// -- Joining -----------------------------------------------------------------

const join = async (name: string) => {
  wantedName = name
  joining = true
  try {
    const joined = await client.request(Join, { name }, { timeoutMs: 5000 })
    rememberId(joined.you.clientId)
    sessionStorage.setItem(nameKey, name)
    ui.messages.replaceChildren(...ui.messages.querySelectorAll("li.pending"))
    for (const line of joined.history) renderLine(line)
    // A full page of history may have more before it.
    ui.loadOlder.hidden = joined.history.length < joinHistory
    ui.olderStatus.textContent = ""
    renderMembers()
    announceChanges = true
    setJoined(true)
  } catch (error) {
    showError(error)
  } finally {
    joining = false
  }
}

// -- Older history, with progress ---------------------------------------------

const loadOlder = async () => {
  const first = ui.messages.querySelector<HTMLLIElement>("li[data-id]")
  const before = first === null ? Number.MAX_SAFE_INTEGER : Number(first.dataset["id"])
  ui.loadOlder.disabled = true
  ui.olderBar.hidden = false
  ui.olderBar.value = 0
  ui.olderStatus.textContent = "Loading older messages…"
  try {
    const { lines } = await client.request(LoadOlder, { before }, {
      timeoutMs: 30_000,
      onProgress: ({ loaded, total }) => {
        ui.olderBar.max = total
        ui.olderBar.value = loaded
        ui.olderStatus.textContent = `Loading older messages… ${loaded}/${total}`
      }
    })
    ui.messages.prepend(...lines.map(lineItem))
    ui.olderStatus.textContent = lines.length === 0 ? "No older messages" : `Loaded ${lines.length} older messages`
    // Fewer than a full load: the beginning of the room's history is on the page.
    if (lines.length < olderLimit) ui.loadOlder.hidden = true
  } catch (error) {
    ui.olderStatus.textContent = ""
    showError(error)
  } finally {
    ui.olderBar.hidden = true
    ui.loadOlder.disabled = false
  }
}

// -- Typing ------------------------------------------------------------------

// Typing notices are throttled so they never starve lines of the room's rate limit: at most one
// "typing" per few seconds, none while lines wait to be confirmed, and no "stopped" after a line
// (the line itself tells the others).
const typingEveryMs = 3000
let typingSentAt = 0
let typingTimer: ReturnType<typeof setTimeout> | undefined
const stopTyping = (tellOthers: boolean) => {
  clearTimeout(typingTimer)
  if (typingSentAt !== 0 && tellOthers) client.send(Typing, { typing: false })
  typingSentAt = 0
}

// -- Saying lines: kept, visibly pending, until the server confirms them ---------

interface Pending {
  readonly text: string
  readonly item: HTMLLIElement
}

const outbox: Array<Pending> = []
let sending = false

const pendingItem = (text: string) => {
  const item = document.createElement("li")
  item.className = "mine pending"
  const body = document.createElement("span")
  body.className = "text"
  body.textContent = text
  const state = document.createElement("span")
  state.className = "state"
  state.textContent = "sending…"
  item.append(body, state)
  ui.messages.append(item)
  scrollDown()
  return item
}

const setState = (pending: Pending, text: string) => {
  pending.item.querySelector(".state")!.textContent = text
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Sends the outbox's lines one after another, in order; each is retried until the server has it. */
const pump = async () => {
  if (sending) return
  sending = true
  try {
    while (outbox.length > 0) {
      const pending = outbox[0]!
      try {
        await client.request(Say, { text: pending.text }, { timeoutMs: 30_000 })
        // The line itself arrived as SAID (published before the reply): the placeholder goes.
        outbox.shift()
        pending.item.remove()
      } catch (error) {
        if (error instanceof ServerError && error.code === "RESOURCE_EXHAUSTED") {
          setState(pending, "waiting…")
          await sleep(error.retryAfterMs ?? 1000)
        } else if (error instanceof ServerError) {
          // Refused for good (not in the room, an invalid line) or cut off with an unknown outcome:
          // the line stays on the page, marked, and is not sent twice behind the user's back.
          outbox.shift()
          pending.item.classList.replace("pending", "failed")
          setState(pending, error.code === "ABORTED" ? "not confirmed" : `not sent: ${error.message}`)
          showError(error)
        } else {
          // No answer yet (offline, a timeout): the client resends it with its session; try again.
          setState(pending, "waiting for the connection…")
          await sleep(1000)
        }
      }
    }
  } finally {
    sending = false
  }
}

const say = (text: string) => {
  outbox.push({ text, item: pendingItem(text) })
  void pump()
}

// -- Wiring ------------------------------------------------------------------

client.onStateChange((state) => {
  ui.status.textContent = state
  ui.status.dataset["state"] = state
})
// A freshly loaded page (first visit or reload) joins to get the history; on a resumed session the
// server knows it is no newcomer. Later reconnects resume: only a session that could not be resumed
// (it expired) makes the page a stranger to the room, and it joins again.
let loaded = false
client.onOpen(() => {
  if (loaded) return
  loaded = true
  if (wantedName !== undefined && !joining) void join(wantedName)
})
client.onResumed(({ recovered }) => {
  if (!recovered) {
    if (wantedName !== undefined && !joining) void join(wantedName)
  } else if (!joining) {
    notice("reconnected")
  }
})
client.onError(showError)
// The server closes with a terminal code to say "do not come back"; the client then stays closed.
client.onClose(({ code, reason, willReconnect }) => {
  if (willReconnect) return
  // Sent away: who was here is no longer known (and no more presence comes).
  announceChanges = false
  ui.members.replaceChildren()
  if (code === CloseCodes.Forbidden) notice(`You were removed from the room${reason === "" ? "" : ` (${reason})`}`)
  else if (code === CloseCodes.Replaced) notice("This chat was opened in another tab")
  else if (code !== CloseCodes.Normal) notice(`Disconnected (${code}${reason === "" ? "" : `: ${reason}`})`)
  ui.sayForm.hidden = true
  ui.joinForm.hidden = true
  ui.older.hidden = true
})

client.on(Said, (line) => {
  typists.delete(line.clientId)
  renderTyping()
  renderLine(line)
})
client.on(Announced, ({ name, text }) => notice(`📣 ${name} to every room: ${text}`))
presence.onChange((change: PresenceChange) => {
  renderMembers()
  if (!announceChanges) return
  for (const name of change.joined) notice(`${name} joined`)
  for (const name of change.left) {
    for (const [clientId, typist] of typists) {
      if (typist.name !== name) continue
      clearTimeout(typist.timer)
      typists.delete(clientId)
    }
    notice(`${name} left`)
  }
  renderTyping()
})
client.on(TypingChanged, ({ member, typing }) => {
  clearTimeout(typists.get(member.clientId)?.timer)
  if (typing) {
    // A "stopped typing" can be lost with a connection: forget typists after a while.
    const timer = setTimeout(() => {
      typists.delete(member.clientId)
      renderTyping()
    }, 6000)
    typists.set(member.clientId, { name: member.name, timer })
  } else typists.delete(member.clientId)
  renderTyping()
})

ui.joinForm.addEventListener("submit", (event) => {
  event.preventDefault()
  const name = ui.name.value.trim()
  if (name.length > 0) void join(name)
})

ui.sayForm.addEventListener("submit", (event) => {
  event.preventDefault()
  const text = ui.text.value.trim()
  if (text.length === 0) return
  stopTyping(false)
  const kick = /^\/kick\s+(.+)$/.exec(text)
  if (kick !== null) {
    client.send(Kick, { name: kick[1]!.trim() })
    ui.text.value = ""
    return
  }
  const announce = /^\/announce\s+(.+)$/.exec(text)
  if (announce !== null) {
    client.send(Announce, { text: announce[1]!.trim() })
    ui.text.value = ""
    return
  }
  say(text)
  ui.text.value = ""
})

ui.text.addEventListener("input", () => {
  const now = Date.now()
  if (outbox.length === 0 && now - typingSentAt >= typingEveryMs) {
    client.send(Typing, { typing: true })
    typingSentAt = now
  }
  clearTimeout(typingTimer)
  typingTimer = setTimeout(() => stopTyping(true), 2500)
})

ui.leave.addEventListener("click", () => {
  stopTyping(true)
  client.send(Leave)
  wantedName = undefined
  sessionStorage.removeItem(nameKey)
  announceChanges = false
  ui.members.replaceChildren()
  notice("You left the room")
  setJoined(false)
})

ui.loadOlder.addEventListener("click", () => void loadOlder())

ui.roomForm.addEventListener("submit", (event) => {
  event.preventDefault()
  const next = ui.roomInput.value.trim()
  if (next.length > 0) location.search = `?room=${encodeURIComponent(next)}`
})

ui.room.textContent = room
document.title = `#${room} · durable-ws chat`
if (wantedName !== undefined) ui.name.value = wantedName
setJoined(false)
void client.connect()
