// `GET /v1/agent`: what this node's agent runs right now (its own facts, never forwarded).
import Foundation
import HTTP2

extension NodeAgent {
    nonisolated func addRoutes(to router: inout Router) {
        router.get("/v1/agent") { _, _ in try json(await self.view) }
    }
}
