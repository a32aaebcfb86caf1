// Tests of configuration and membership validation: bad settings are refused with a useful message.
import ClusterModel
import RaftCore
import Testing

@Test func defaultConfigurationIsValid() throws {
    try RaftConfiguration(id: 1).validate()
}

@Test(arguments: [
    (RaftConfiguration(id: 0), "id must not be 0"),
    (RaftConfiguration(id: 1, electionTicks: 1, heartbeatTicks: 1), "electionTicks (1) must be greater"),
    (RaftConfiguration(id: 1, heartbeatTicks: 0), "heartbeatTicks is 0"),
    (RaftConfiguration(id: 1, maxInflightMessages: 0), "maxInflightMessages is 0"),
    (RaftConfiguration(id: 1, snapshotChunkBytes: 0), "snapshotChunkBytes is 0"),
])
func invalidConfigurationIsRefusedWithItsReason(configuration: RaftConfiguration, reason: String) {
    #expect {
        try configuration.validate()
    } throws: { error in
        (error as? ConfigurationError)?.description.contains(reason) == true
    }
}

@Test func membershipWithANodeBothVoterAndLearnerIsRefused() {
    #expect(throws: ConfigurationError.self) {
        try RaftNode(
            configuration: RaftConfiguration(id: 1),
            membership: Membership(voters: [1, 2], learners: [2]),
            random: SeededGenerator(seed: 1)
        )
    }
}
