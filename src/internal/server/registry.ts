import type { Attachment } from "./connection"
import type { Socket } from "./data"
import type { SocketRegistry } from "./instance"

/** Sockets held by the runtime (Hibernation API): they outlive the instance. */
export const hibernatingRegistry = (state: DurableObjectState): SocketRegistry => ({
  read: (socket) => (socket as WebSocket).deserializeAttachment(),
  write: (socket, attachment) => (socket as WebSocket).serializeAttachment(attachment),
  sockets: () => state.getWebSockets(),
  forget: () => {}
})

/** Sockets held in memory: standard `accept()` mode and test connections. */
export const memoryRegistry = (): SocketRegistry => {
  const sockets = new Set<Socket>()
  const attachments = new WeakMap<Socket, Attachment>()
  return {
    read: (socket) => attachments.get(socket),
    write: (socket, attachment) => void attachments.set(socket, attachment),
    sockets: () => sockets,
    forget: (socket) => void sockets.delete(socket),
    add: (socket) => void sockets.add(socket)
  }
}
