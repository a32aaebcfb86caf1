// The heartbeat's answers on the wire: each kind comes back as it was sent; an unknown kind is refused.
import ClusterModel
import Controllers
import Testing

@testable import Node

@Suite struct HeartbeatWireTests {
    @Test func everyAnswerKindRoundTrips() throws {
        let answers: [HeartbeatAnswer] = [
            .granted(LeaseGrant(duration: .milliseconds(1800), requiredAppliedIndex: 42)),
            .refused(reason: "n2 is declared down; the leader brings it back up now that it heartbeats"),
            .notAMember(membershipIndex: 57, reason: "n4 is not a member of the cluster: the membership committed …"),
        ]
        for answer in answers {
            #expect(try HeartbeatWire.decodeAnswer(HeartbeatWire.encode(answer)) == answer)
        }
    }

    @Test func anUnknownKindOrTrailingBytesAreRefused() {
        #expect(throws: WireFormatError.self) { try HeartbeatWire.decodeAnswer([9, 1]) }
        // A notAMember answer cut before its index.
        #expect(throws: WireFormatError.self) { try HeartbeatWire.decodeAnswer([3]) }
    }
}
