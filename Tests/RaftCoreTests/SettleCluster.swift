// The message pump of the core's small cluster tests: every node's `Ready` handed over until quiet.
import ClusterModel
import RaftCore

/// Handles every node's `Ready` but those `down` (advancing it at once, as a shell that persisted
/// it would) and delivers its messages to the nodes that are not down, until no node has one.
/// `observe` sees each `Ready` before its messages are delivered.
func settle(
    _ nodes: inout [NodeID: RaftNode], down: Set<NodeID>, observe: (NodeID, Ready) -> Void = { _, _ in }
) throws {
    var moved = true
    while moved {
        moved = false
        for id in nodes.keys.sorted() where !down.contains(id) && nodes[id]!.hasReady {
            moved = true
            let ready = nodes[id]!.ready()
            nodes[id]!.advance(ready)
            observe(id, ready)
            for message in ready.messages where !down.contains(message.to) {
                try nodes[message.to]!.step(message)
            }
        }
    }
}
