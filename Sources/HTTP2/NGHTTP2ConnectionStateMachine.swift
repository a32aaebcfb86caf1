// When a connection may read, start streams or must close: its lifecycle as a value (pure: time is an argument).
import NIOCore

/// The lifecycle of one HTTP/2 connection, server or client side.
///
/// `NGHTTP2Connection` reports what happened (the channel became active, bytes arrived, the peer's
/// SETTINGS, PING answer or GOAWAY arrived, a timer fired, a shutdown or a close was asked for) and
/// does what the returned action says; it keeps no lifecycle flag of its own. The session is made by
/// the handler, given to the machine in `sessionStarted`, and handed back by `handlerRemoved` to be
/// deleted; the machine only carries it, so a test may give it any pointer.
///
///     idle ──sessionStarted──▶ open ──quiesceRequested──▶ quiescing
///       │                        │                            │
///   sessionFailed        closeRequested, a timer      closeRequested, a timer
///       │                        │                            │
///       └────────────────────────┴──────────▶ closing ◀───────┘
///
///     any state ──handlerRemoved──▶ closed
///
/// The channel going inactive or failing is not a state of its own: NIO removes the handler right
/// after, and until then the connection answers as it did (its streams have already failed).
///
/// Not here, because they are not the lifecycle: where the event loop is in the handler's call stack
/// (inside mem_recv or mem_send, inside a read burst, inside a flush, a flush queued for this tick).
/// Those flags are set and cleared within one call or one read, the same way in every state, and
/// guard against re-entering the session; they stay on the handler next to the code they guard.
struct NGHTTP2ConnectionStateMachine {
    enum State: Equatable {
        /// In the pipeline; the channel is not active yet, so there is no session.
        case idle
        /// The session runs: frames are read and written, streams open and close.
        case open(Open)
        /// We sent GOAWAY: the peer opens no new streams, those in flight finish, and then nghttp2
        /// wants neither to read nor to write and the connection closes.
        case quiescing(Open)
        /// We closed the channel (a fatal session error, nothing left to do, a silent peer, no first
        /// bytes in time) or nghttp2 could not make a session. Nothing more is read or started; the
        /// session, if there is one, is deleted when the handler is removed.
        case closing(Closing)
        /// The handler left the pipeline and its session was deleted.
        case closed
    }

    struct Open: Equatable {
        let session: NGHTTP2Session
        var handshake: Handshake
        /// The peer sent GOAWAY: no new streams here, and a stream it refused was not processed.
        var peerSentGoaway = false
        /// Client keepalive: when the PING now unanswered was sent (nil: none is).
        var pingSentAt: NIODeadline?
    }

    /// What a new connection waits for before it counts as set up.
    enum Handshake: Equatable {
        /// Server: the peer has sent nothing since `since`; it is closed if that lasts the setup timeout.
        case awaitingFirstBytes(since: NIODeadline)
        /// Client: the peer's SETTINGS has not arrived, so its stream limit is unknown and requests
        /// beyond nghttp2's assumed limit would be refused. `ready` completes when it arrives.
        case awaitingPeerSettings(ready: EventLoopPromise<Void>)
        case done
    }

    struct Closing: Equatable {
        /// Nil when nghttp2 could not make one.
        let session: NGHTTP2Session?
        let peerSentGoaway: Bool
        /// Client: a wait for the peer's SETTINGS still pending; it fails when the channel goes.
        var awaitingPeerSettings: EventLoopPromise<Void>?
    }

    private(set) var state = State.idle

    // MARK: Queries

    /// The session, from `sessionStarted` until `handlerRemoved`.
    var session: NGHTTP2Session? {
        switch self.state {
        case .open(let open), .quiescing(let open): open.session
        case .closing(let closing): closing.session
        case .idle, .closed: nil
        }
    }

    /// The session while frames are still read and streams may be started (open or quiescing).
    var liveSession: NGHTTP2Session? {
        self.open?.session
    }

    var peerSentGoaway: Bool {
        switch self.state {
        case .open(let open), .quiescing(let open): open.peerSentGoaway
        case .closing(let closing): closing.peerSentGoaway
        case .idle, .closed: false
        }
    }

    enum PeerSettingsWait: Equatable {
        case ready
        case wait(EventLoopFuture<Void>)
        /// There is no session, or it is closing: the handshake cannot complete.
        case failed
    }

    /// Client: whether a caller may use the connection now, must wait for the peer's SETTINGS, or never can.
    var peerSettingsWait: PeerSettingsWait {
        switch self.state {
        case .idle, .closing, .closed:
            return .failed
        case .open(let open), .quiescing(let open):
            guard case .awaitingPeerSettings(let ready) = open.handshake else { return .ready }
            return .wait(ready.futureResult)
        }
    }

    // MARK: Setting up

    enum ChannelActiveAction: Equatable {
        /// Make the session, then report `sessionStarted` or `sessionFailed`.
        case startSession
        case none
    }

    /// The channel is active (or was when the handler was added).
    mutating func channelActive() -> ChannelActiveAction {
        if case .idle = self.state { return .startSession }
        return .none
    }

    mutating func sessionStarted(_ session: NGHTTP2Session, handshake: Handshake) {
        guard case .idle = self.state else {
            preconditionFailure("an HTTP/2 session started in state \(self.state)")
        }
        self.state = .open(Open(session: session, handshake: handshake))
    }

    /// nghttp2 could not make a session; the handler closes the channel.
    mutating func sessionFailed() {
        guard case .idle = self.state else {
            preconditionFailure("an HTTP/2 session failed to start in state \(self.state)")
        }
        self.state = .closing(Closing(session: nil, peerSentGoaway: false))
    }

    // MARK: Reading

    enum ReadAction: Equatable {
        /// Feed the bytes to this session.
        case receive(NGHTTP2Session)
        /// No session reads any more (or yet): drop the bytes.
        case ignore
    }

    /// Bytes arrived from the peer.
    mutating func channelRead() -> ReadAction {
        switch self.state {
        case .open(var open):
            if case .awaitingFirstBytes = open.handshake {
                open.handshake = .done
                self.state = .open(open)
            }
            return .receive(open.session)
        case .quiescing(var open):
            if case .awaitingFirstBytes = open.handshake {
                open.handshake = .done
                self.state = .quiescing(open)
            }
            return .receive(open.session)
        case .idle, .closing, .closed:
            return .ignore
        }
    }

    enum PeerSettingsAction: Equatable {
        /// The connection is ready: succeed the wait, once mem_recv has returned.
        case succeedWait(EventLoopPromise<Void>)
        case none
    }

    // Frames arrive only inside mem_recv, and so only while open or quiescing.

    /// The peer's SETTINGS arrived (the first, or a later one).
    mutating func peerSettingsReceived() -> PeerSettingsAction {
        self.modifyOpen(event: "SETTINGS received") { open in
            guard case .awaitingPeerSettings(let ready) = open.handshake else { return .none }
            open.handshake = .done
            return .succeedWait(ready)
        }
    }

    mutating func goawayReceived() {
        self.modifyOpen(event: "GOAWAY received") { $0.peerSentGoaway = true }
    }

    mutating func pingAnswered() {
        self.modifyOpen(event: "PING answered") { $0.pingSentAt = nil }
    }

    // MARK: Timers

    enum KeepaliveAction: Equatable {
        /// Submit a PING and report `pingSent(at:)` if nghttp2 took it.
        case sendPing(NGHTTP2Session)
        /// The last PING went unanswered for the whole timeout: close the channel.
        case closeChannel
        case none
    }

    /// Client: the keepalive timer fired. A peer whose host vanished or whose network was cut sends
    /// nothing, not even a reset, and TCP would keep the connection for many minutes.
    mutating func keepaliveTimerFired(now: NIODeadline, timeout: TimeAmount) -> KeepaliveAction {
        guard let open = self.open else { return .none }
        guard let pingSentAt = open.pingSentAt else { return .sendPing(open.session) }
        guard now - pingSentAt >= timeout else { return .none }
        self.enterClosing()
        return .closeChannel
    }

    /// The handler submitted the PING `keepaliveTimerFired` asked for.
    mutating func pingSent(at now: NIODeadline) {
        self.modifyOpen(event: "PING sent") { $0.pingSentAt = now }
    }

    enum SweepAction: Equatable {
        /// Look for streams whose request stalled past the request timeout.
        case sweepStreams
        /// The peer sent nothing within the setup timeout (a stalled or idle-probing client): close.
        case closeChannel
        case none
    }

    /// Server: the timeout sweep fired.
    mutating func sweepTimerFired(now: NIODeadline, setupTimeout: TimeAmount) -> SweepAction {
        guard let open = self.open else { return .none }
        if case .awaitingFirstBytes(let since) = open.handshake, now - since >= setupTimeout {
            self.enterClosing()
            return .closeChannel
        }
        return .sweepStreams
    }

    // MARK: Ending

    enum QuiesceAction: Equatable {
        /// Submit GOAWAY, answer the open sink streams and flush.
        case sendGoaway(NGHTTP2Session)
        case none
    }

    /// A graceful shutdown was asked for. Asked again, GOAWAY is sent again (as it always was):
    /// nghttp2 keeps the lowest last-stream id, and a sink opened since is answered too.
    mutating func quiesceRequested() -> QuiesceAction {
        switch self.state {
        case .open(let open), .quiescing(let open):
            self.state = .quiescing(open)
            return .sendGoaway(open.session)
        case .idle, .closing, .closed:
            return .none
        }
    }

    enum CloseAction: Equatable {
        /// Close the channel; the session stays until the handler is removed.
        case closeChannel
        /// The channel is closing or closed already.
        case none
    }

    /// The handler decided to close (a fatal session error, or nghttp2 has nothing left to do).
    mutating func closeRequested() -> CloseAction {
        switch self.state {
        case .open, .quiescing:
            self.enterClosing()
            return .closeChannel
        case .closing, .closed:
            return .none
        case .idle:
            preconditionFailure("asked to close an HTTP/2 connection in state \(self.state)")
        }
    }

    enum ChannelClosedAction: Equatable {
        /// The handshake cannot complete: fail the wait for the peer's SETTINGS.
        case failWait(EventLoopPromise<Void>)
        case none
    }

    /// The channel went inactive or failed, or the handler is leaving the pipeline: the handler
    /// fails every stream. The state stays (see the type's comment); a client still waiting for
    /// the peer's SETTINGS stops waiting.
    mutating func channelClosed() -> ChannelClosedAction {
        switch self.state {
        case .closing(var closing):
            guard let ready = closing.awaitingPeerSettings else { return .none }
            closing.awaitingPeerSettings = nil
            self.state = .closing(closing)
            return .failWait(ready)
        case .open, .quiescing:
            return self.modifyOpen(event: "channel closed") { open in
                guard case .awaitingPeerSettings(let ready) = open.handshake else { return .none }
                open.handshake = .done
                return .failWait(ready)
            }
        case .idle, .closed:
            return .none
        }
    }

    enum HandlerRemovedAction: Equatable {
        case deleteSession(NGHTTP2Session)
        case none
    }

    /// The handler left the pipeline (after `channelClosed`, if the channel closed).
    mutating func handlerRemoved() -> HandlerRemovedAction {
        if case .closed = self.state {
            preconditionFailure("an HTTP/2 handler was removed twice")
        }
        let session = self.session
        self.state = .closed
        guard let session else { return .none }
        return .deleteSession(session)
    }

    /// Open or quiescing → closing, keeping what the closing state needs.
    private mutating func enterClosing() {
        guard let open = self.open else {
            preconditionFailure("closing an HTTP/2 connection in state \(self.state)")
        }
        var awaiting: EventLoopPromise<Void>?
        if case .awaitingPeerSettings(let ready) = open.handshake { awaiting = ready }
        self.state = .closing(
            Closing(session: open.session, peerSentGoaway: open.peerSentGoaway, awaitingPeerSettings: awaiting))
    }

    /// The open (or quiescing) state's data.
    private var open: Open? {
        switch self.state {
        case .open(let open), .quiescing(let open): open
        case .idle, .closing, .closed: nil
        }
    }

    /// Runs `body` on the open (or quiescing) state's data in place; `event` cannot happen in any other state.
    private mutating func modifyOpen<Result>(event: StaticString, _ body: (inout Open) -> Result) -> Result {
        switch self.state {
        case .open(var open):
            let result = body(&open)
            self.state = .open(open)
            return result
        case .quiescing(var open):
            let result = body(&open)
            self.state = .quiescing(open)
            return result
        case .idle, .closing, .closed:
            preconditionFailure("HTTP/2 connection: \(event) in state \(self.state)")
        }
    }
}
