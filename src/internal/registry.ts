import type { Socket } from "../Connection"
import type { Attachment } from "./connection"
import type { SocketRegistry } from "./instance"

const OPEN = 1

/** Sockets held by the runtime (Hibernation API): they outlive the instance. */
export const hibernatingRegistry = (state: DurableObjectState): SocketRegistry => ({
  read: (socket) => (socket as WebSocket).deserializeAttachment(),
  write: (socket, attachment) => (socket as WebSocket).serializeAttachment(attachment),
  sockets: () => state.getWebSockets(),
  openCount: () => {
    let open = 0
    for (const ws of state.getWebSockets()) if (ws.readyState === OPEN) open++
    return open
  },
  forget: () => {}
})

export interface MemoryRegistry extends SocketRegistry {
  readonly add: (socket: Socket) => void
}

/** Sockets held in memory: standard `accept()` mode and test connections. */
export const memoryRegistry = (): MemoryRegistry => {
  const sockets = new Set<Socket>()
  const attachments = new WeakMap<Socket, Attachment>()
  return {
    read: (socket) => attachments.get(socket),
    write: (socket, attachment) => void attachments.set(socket, attachment),
    sockets: () => sockets,
    openCount: () => sockets.size,
    forget: (socket) => void sockets.delete(socket),
    add: (socket) => void sockets.add(socket)
  }
}
