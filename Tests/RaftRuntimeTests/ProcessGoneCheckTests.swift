// How the reconnects after a lost peer connection are read into "its process is gone" or not.
import NIOCore
import RaftRuntime
import Testing

@testable import HTTP2

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

@Suite struct ProcessGoneCheckTests {
    private let peer = "127.0.0.1:7201"

    private func connectFailed(_ errno: Int32) -> HTTP2ClientError {
        HTTP2ClientError.connectFailed(peer: peer, IOError(errnoCode: errno, reason: "connect"))
    }

    @Test func aRefusedReconnectMeansTheProcessIsGone() {
        var check = ProcessGoneCheck()
        #expect(check.read(connectFailed(ECONNREFUSED)) == .gone)
    }

    @Test func aReconnectThatSucceedsMeansItIsThere() {
        var check = ProcessGoneCheck()
        #expect(check.read(nil) == .alive)
    }

    /// The dying process's listening socket took the connect and reset it before the client saw
    /// the connect through (under CPU load, a survivor's log: "connect failed: … connection reset
    /// … (errno: 104)", and no election until the timeout). Asked again, the port refuses.
    @Test func aConnectResetByTheDyingProcessIsAskedAgain() {
        var check = ProcessGoneCheck()
        #expect(check.read(connectFailed(ECONNRESET)) == .tryAgain(after: ProcessGoneCheck.retryDelay))
        #expect(check.read(connectFailed(ECONNREFUSED)) == .gone)
    }

    /// Taken by the listening socket, then closed before the peer's SETTINGS came.
    @Test func aConnectionClosedInTheHandshakeIsAskedAgain() {
        var check = ProcessGoneCheck()
        let closed = HTTP2ClientError(
            .connectionClosed, peer: peer, detail: "the connection closed during the HTTP/2 handshake")
        #expect(check.read(closed) == .tryAgain(after: ProcessGoneCheck.retryDelay))
        #expect(check.read(nil) == .alive)
    }

    @Test func resetsOnEveryAttemptAreNoSign() {
        var check = ProcessGoneCheck()
        for _ in 1..<ProcessGoneCheck.attempts {
            #expect(check.read(connectFailed(ECONNRESET)) == .tryAgain(after: ProcessGoneCheck.retryDelay))
        }
        #expect(check.read(connectFailed(ECONNRESET)) == .noSign)
        #expect(check.attempt == ProcessGoneCheck.attempts)
    }

    /// A host that vanished or a cut network: the election timeout's job, not this check's.
    @Test func aTimeoutOrAPeerThatDoesNotSpeakIsNoSign() {
        var timedOut = ProcessGoneCheck()
        #expect(
            timedOut.read(
                HTTP2ClientError(.deadlineExceeded, peer: peer, detail: "the deadline passed while connecting"))
                == .noSign)
        var silent = ProcessGoneCheck()
        #expect(
            silent.read(HTTP2ClientError(.connectionRefused, peer: peer, detail: "the peer sent no HTTP/2 SETTINGS"))
                == .noSign)
    }

    @Test func failingFastAfterARefusalMeansGoneAndAfterAResetAsksAgain() {
        var afterRefusal = ProcessGoneCheck()
        #expect(
            afterRefusal.read(
                HTTP2ClientError(.peerUnavailable, peer: peer, detail: "backing off", connectWasRefused: true)) == .gone
        )
        var afterReset = ProcessGoneCheck()
        #expect(
            afterReset.read(
                HTTP2ClientError(.peerUnavailable, peer: peer, detail: "backing off", connectWasReset: true))
                == .tryAgain(after: ProcessGoneCheck.retryDelay))
    }
}
