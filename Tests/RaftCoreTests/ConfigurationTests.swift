// Tests of configuration and membership validation: bad settings are refused with a useful message.
import ClusterModel
import RaftCore
import Testing

@Test func defaultConfigurationIsValid() throws {
    try RaftConfiguration(id: 1).validate()
}

@Test func theDefaultLeaderSilenceIsThreeHeartbeatsOrAThirdOfTheElectionTimeoutAndValid() throws {
    #expect(RaftConfiguration.defaultLeaderSilenceTicks(electionTicks: 10, heartbeatTicks: 1) == 3)
    #expect(RaftConfiguration.defaultLeaderSilenceTicks(electionTicks: 30, heartbeatTicks: 1) == 10)
    #expect(RaftConfiguration.defaultLeaderSilenceTicks(electionTicks: 20, heartbeatTicks: 2) == 6)
    #expect(RaftConfiguration.defaultLeaderSilenceTicks(electionTicks: 6, heartbeatTicks: 2) == nil)
    for (election, heartbeat) in [(10, 1), (30, 1), (20, 2), (4, 1), (100, 7)] {
        let silence = RaftConfiguration.defaultLeaderSilenceTicks(electionTicks: election, heartbeatTicks: heartbeat)
        try RaftConfiguration(
            id: 1, electionTicks: election, heartbeatTicks: heartbeat, leaderSilenceTicks: silence
        ).validate()
    }
}

@Test(arguments: [
    (RaftConfiguration(id: 0), "id must not be 0"),
    (RaftConfiguration(id: 1, electionTicks: 1, heartbeatTicks: 1), "electionTicks (1) must be greater"),
    (RaftConfiguration(id: 1, heartbeatTicks: 0), "heartbeatTicks is 0"),
    (RaftConfiguration(id: 1, maxInflightMessages: 0), "maxInflightMessages is 0"),
    (RaftConfiguration(id: 1, snapshotChunkBytes: 0), "snapshotChunkBytes is 0"),
    (RaftConfiguration(id: 1, leaderSilenceTicks: 1), "leaderSilenceTicks (1) must be above heartbeatTicks (1)"),
    (RaftConfiguration(id: 1, leaderSilenceTicks: 10), "and below electionTicks (10)"),
    (RaftConfiguration(id: 1, checkQuorum: false, leaderSilenceTicks: 3), "needs preVote and checkQuorum"),
    (RaftConfiguration(id: 1, preVote: false, leaderSilenceTicks: 3), "needs preVote and checkQuorum"),
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
