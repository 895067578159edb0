/**
 * The room's recent history, kept in the Durable Object's SQLite storage.
 * A service, so handlers `yield*` it and the object provides it through
 * its layer.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type { StorageError } from "../../src/Errors"
import { Storage } from "../../src/Storage"
import type { ChatLine } from "./protocol"

const Row = Schema.Struct({
  id: Schema.Number,
  client_id: Schema.String,
  name: Schema.String,
  text: Schema.String,
  sent_at: Schema.Number
})

const Count = Schema.Struct({ n: Schema.Number })

const toLine = (row: typeof Row.Type): ChatLine => ({
  id: row.id,
  clientId: row.client_id,
  name: row.name,
  text: row.text,
  sentAt: new Date(row.sent_at)
})

export class ChatHistory extends Context.Service<ChatHistory, {
  /** Stores a line (dropping the oldest beyond the limit) and returns it with its id. */
  readonly append: (line: Omit<ChatLine, "id">) => Effect.Effect<ChatLine, StorageError>
  /** The most recent `count` lines, oldest first. */
  readonly recent: (count: number) => Effect.Effect<ReadonlyArray<ChatLine>, StorageError>
  /** Up to `count` lines older than the line `before`, oldest first. */
  readonly before: (before: number, count: number) => Effect.Effect<ReadonlyArray<ChatLine>, StorageError>
  /** How many kept lines are older than the line `before`. */
  readonly countBefore: (before: number) => Effect.Effect<number, StorageError>
}>()("chat/ChatHistory") {
  /** Keeps the last `limit` lines of the room; needs the object's {@link Storage}. */
  static readonly layer = (limit: number): Layer.Layer<ChatHistory, StorageError, Storage> =>
    Layer.effect(
      ChatHistory,
      Effect.gen(function*() {
        const storage = yield* Storage
        yield* storage.sql(
          "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, client_id TEXT NOT NULL, name TEXT NOT NULL, text TEXT NOT NULL, sent_at INTEGER NOT NULL)"
        )
        return ChatHistory.of({
          append: (line) =>
            Effect.gen(function*() {
              const [inserted] = yield* storage.sqlAs(
                Row,
                "INSERT INTO messages (client_id, name, text, sent_at) VALUES (?, ?, ?, ?) RETURNING *",
                line.clientId,
                line.name,
                line.text,
                line.sentAt.getTime()
              )
              // Ids only grow, so everything at or below id - limit is older than the last `limit` lines.
              yield* storage.sql("DELETE FROM messages WHERE id <= ?", inserted!.id - limit)
              return toLine(inserted!)
            }),
          recent: (count) =>
            storage.sqlAs(Row, "SELECT * FROM messages ORDER BY id DESC LIMIT ?", count).pipe(
              Effect.map((rows) => rows.map(toLine).reverse())
            ),
          before: (before, count) =>
            storage.sqlAs(Row, "SELECT * FROM messages WHERE id < ? ORDER BY id DESC LIMIT ?", before, count).pipe(
              Effect.map((rows) => rows.map(toLine).reverse())
            ),
          countBefore: (before) =>
            storage.sqlAs(Count, "SELECT COUNT(*) AS n FROM messages WHERE id < ?", before).pipe(
              Effect.map((rows) => rows[0]?.n ?? 0)
            )
        })
      })
    )
}
