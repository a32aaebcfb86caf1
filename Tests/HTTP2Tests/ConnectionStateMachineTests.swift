// The HTTP/2 connection's lifecycle without a socket or a session: events in, actions out, time as an argument.
import NIOCore
import NIOEmbedded
import Testing

@testable import HTTP2

@Suite struct ConnectionStateMachineTests {
    /// A stand-in: the machine only carries the session and hands it back, so any pointer will do.
    let session = NGHTTP2Session(pointer: OpaquePointer(bitPattern: 0x5E55)!)
    let loop = EmbeddedEventLoop()
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    private func openServer() -> NGHTTP2ConnectionStateMachine {
        var machine = NGHTTP2ConnectionStateMachine()
        #expect(machine.channelActive() == .startSession)
        machine.sessionStarted(self.session, handshake: .awaitingFirstBytes(since: self.start))
        return machine
    }

    private func openClient(waitingOn ready: EventLoopPromise<Void>) -> NGHTTP2ConnectionStateMachine {
        var machine = NGHTTP2ConnectionStateMachine()
        #expect(machine.channelActive() == .startSession)
        machine.sessionStarted(self.session, handshake: .awaitingPeerSettings(ready: ready))
        return machine
    }

    @Test func nothingIsReadBeforeTheSessionStartsOrAfterItCloses() {
        var machine = NGHTTP2ConnectionStateMachine()
        #expect(machine.channelRead() == .ignore)
        #expect(machine.session == nil)

        #expect(machine.channelActive() == .startSession)
        machine.sessionStarted(self.session, handshake: .done)
        #expect(machine.channelActive() == .none, "a second activation must not make a second session")
        #expect(machine.channelRead() == .receive(self.session))
        #expect(machine.liveSession == self.session)

        #expect(machine.closeRequested() == .closeChannel)
        #expect(machine.channelRead() == .ignore)
        #expect(machine.liveSession == nil)
        #expect(machine.session == self.session, "the session lives until the handler is removed")
        #expect(machine.closeRequested() == .none, "the channel is closed once")

        #expect(machine.handlerRemoved() == .deleteSession(self.session))
        #expect(machine.state == .closed)
        #expect(machine.session == nil)
    }

    @Test func aSessionThatCannotBeMadeClosesTheChannelAndLeavesNothingToDelete() {
        var machine = NGHTTP2ConnectionStateMachine()
        #expect(machine.channelActive() == .startSession)
        machine.sessionFailed()
        #expect(machine.state == .closing(.init(session: nil, peerSentGoaway: false)))
        #expect(machine.channelActive() == .none)
        #expect(machine.channelRead() == .ignore)
        #expect(machine.handlerRemoved() == .none)
    }

    @Test func aHandlerRemovedBeforeTheChannelWasActiveHasNoSession() {
        var machine = NGHTTP2ConnectionStateMachine()
        #expect(machine.channelClosed() == .none)
        #expect(machine.handlerRemoved() == .none)
        #expect(machine.state == .closed)
        #expect(machine.channelActive() == .none)
    }

    @Test func aServerIsClosedWhenThePeerSendsNothingWithinTheSetupTimeout() {
        var machine = self.openServer()
        let setup = TimeAmount.seconds(10)
        #expect(machine.sweepTimerFired(now: self.start + .seconds(9), setupTimeout: setup) == .sweepStreams)
        #expect(machine.sweepTimerFired(now: self.start + .seconds(10), setupTimeout: setup) == .closeChannel)
        #expect(machine.state == .closing(.init(session: self.session, peerSentGoaway: false)))
        #expect(machine.sweepTimerFired(now: self.start + .seconds(11), setupTimeout: setup) == .none)
        #expect(machine.closeRequested() == .none)
    }

    @Test func anyBytesFromThePeerEndTheSetupWait() {
        var machine = self.openServer()
        #expect(machine.channelRead() == .receive(self.session))
        guard case .open(let open) = machine.state else {
            Issue.record("expected an open connection, got \(machine.state)")
            return
        }
        #expect(open.handshake == .done)
        #expect(machine.sweepTimerFired(now: self.start + .seconds(60), setupTimeout: .seconds(10)) == .sweepStreams)
    }

    @Test func aClientIsReadyOnceThePeersSettingsArrive() throws {
        let ready = self.loop.makePromise(of: Void.self)
        var machine = self.openClient(waitingOn: ready)
        #expect(machine.peerSettingsWait == .wait(ready.futureResult))

        #expect(machine.peerSettingsReceived() == .succeedWait(ready))
        ready.succeed()
        #expect(machine.peerSettingsWait == .ready)
        #expect(machine.peerSettingsReceived() == .none, "later SETTINGS change nothing")
        #expect(machine.channelClosed() == .none, "nobody is waiting any more")
    }

    @Test func aClientWhoseChannelClosesDuringTheHandshakeFailsTheWaitOnce() {
        let ready = self.loop.makePromise(of: Void.self)
        var machine = self.openClient(waitingOn: ready)
        #expect(machine.channelClosed() == .failWait(ready))
        ready.fail(ChannelError.ioOnClosedChannel)
        #expect(machine.channelClosed() == .none)
    }

    @Test func aClientClosedDuringTheHandshakeFailsTheWaitWhenTheChannelGoes() {
        let ready = self.loop.makePromise(of: Void.self)
        var machine = self.openClient(waitingOn: ready)
        #expect(machine.closeRequested() == .closeChannel)
        #expect(machine.peerSettingsWait == .failed, "no new caller may wait on a closing connection")
        #expect(machine.channelClosed() == .failWait(ready), "the caller already waiting learns it")
        ready.fail(ChannelError.ioOnClosedChannel)
        #expect(machine.channelClosed() == .none)
        #expect(machine.handlerRemoved() == .deleteSession(self.session))
        #expect(machine.peerSettingsWait == .failed)
    }

    @Test func aPeerThatStopsAnsweringPINGsIsClosedAfterTheTimeout() {
        var machine = NGHTTP2ConnectionStateMachine()
        _ = machine.channelActive()
        machine.sessionStarted(self.session, handshake: .done)
        let timeout = TimeAmount.seconds(5)

        #expect(machine.keepaliveTimerFired(now: self.start, timeout: timeout) == .sendPing(self.session))
        machine.pingSent(at: self.start)
        #expect(machine.keepaliveTimerFired(now: self.start + .seconds(1), timeout: timeout) == .none)
        machine.pingAnswered()

        let second = self.start + .seconds(2)
        #expect(machine.keepaliveTimerFired(now: second, timeout: timeout) == .sendPing(self.session))
        machine.pingSent(at: second)
        #expect(machine.keepaliveTimerFired(now: second + .seconds(4), timeout: timeout) == .none)
        #expect(machine.keepaliveTimerFired(now: second + .seconds(5), timeout: timeout) == .closeChannel)
        #expect(machine.liveSession == nil)
        #expect(machine.keepaliveTimerFired(now: second + .seconds(6), timeout: timeout) == .none)
    }

    @Test func aPINGThatNGHTTP2DidNotTakeIsSentAgainOnTheNextTick() {
        var machine = NGHTTP2ConnectionStateMachine()
        _ = machine.channelActive()
        machine.sessionStarted(self.session, handshake: .done)
        #expect(machine.keepaliveTimerFired(now: self.start, timeout: .seconds(5)) == .sendPing(self.session))
        // No pingSent(at:): the submit failed, so no answer is awaited.
        let later = self.start + .seconds(60)
        #expect(machine.keepaliveTimerFired(now: later, timeout: .seconds(5)) == .sendPing(self.session))
    }

    @Test func thePeersGOAWAYIsRememberedUntilTheHandlerIsRemoved() {
        var machine = self.openServer()
        #expect(!machine.peerSentGoaway)
        machine.goawayReceived()
        #expect(machine.peerSentGoaway)
        #expect(machine.channelRead() == .receive(self.session), "streams in flight still finish")
        #expect(machine.closeRequested() == .closeChannel)
        #expect(machine.peerSentGoaway, "a request refused now is still known to be unprocessed")
        _ = machine.handlerRemoved()
        #expect(!machine.peerSentGoaway)
    }

    @Test func aGracefulShutdownSendsGOAWAYAndKeepsReadingUntilTheStreamsAreDone() {
        var machine = self.openServer()
        #expect(machine.quiesceRequested() == .sendGoaway(self.session))
        guard case .quiescing = machine.state else {
            Issue.record("expected a quiescing connection, got \(machine.state)")
            return
        }
        #expect(machine.channelRead() == .receive(self.session))
        #expect(machine.liveSession == self.session)
        #expect(machine.quiesceRequested() == .sendGoaway(self.session), "asked again, it sends GOAWAY again")

        // nghttp2 wants neither to read nor to write once the streams are done: the handler closes.
        #expect(machine.closeRequested() == .closeChannel)
        #expect(machine.quiesceRequested() == .none)
        #expect(machine.handlerRemoved() == .deleteSession(self.session))
        #expect(machine.quiesceRequested() == .none)
    }

    @Test func aSetupTimeoutStillAppliesWhileQuiescing() {
        var machine = self.openServer()
        _ = machine.quiesceRequested()
        let action = machine.sweepTimerFired(now: self.start + .seconds(10), setupTimeout: .seconds(10))
        #expect(action == .closeChannel)
    }

    @Test func impossibleEventsStopTheProcessAndNameTheState() async throws {
        let frameWithoutSession = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var machine = NGHTTP2ConnectionStateMachine()
            machine.goawayReceived()
        }
        let message = String(decoding: try #require(frameWithoutSession).standardErrorContent, as: UTF8.self)
        #expect(message.contains("GOAWAY received in state idle"), "\(message)")

        await #expect(processExitsWith: .failure) {
            var machine = NGHTTP2ConnectionStateMachine()
            machine.sessionStarted(NGHTTP2Session(pointer: OpaquePointer(bitPattern: 0x5E55)!), handshake: .done)
            machine.sessionStarted(NGHTTP2Session(pointer: OpaquePointer(bitPattern: 0x5E55)!), handshake: .done)
        }
        await #expect(processExitsWith: .failure) {
            var machine = NGHTTP2ConnectionStateMachine()
            _ = machine.handlerRemoved()
            _ = machine.handlerRemoved()
        }
    }
}
