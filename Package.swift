// swift-tools-version: 6.1
// Flotilla: a failover cluster for virtual machines. The target list is the architecture
// (docs/architecture.md): pure cores import only ClusterModel; shells do the I/O.
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "flotilla",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "flotilla", targets: ["flotilla"]),
        .executable(name: "flotilla-bench", targets: ["FlotillaBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // Pure: ids and small value types shared by every module.
        .target(name: "ClusterModel", swiftSettings: swiftSettings),

        // Pure: the Raft consensus state machine (tick/step/propose in, Ready out).
        .target(name: "RaftCore", dependencies: ["ClusterModel"], swiftSettings: swiftSettings),

        // C: CRC-32C with the SSE4.2 instruction, for the write-ahead log's checksums.
        .target(name: "CCRC32C"),

        // Shell: write-ahead log segments with checksums, snapshot files, crash recovery.
        .target(
            name: "RaftStorage", dependencies: ["ClusterModel", "RaftCore", "CCRC32C"], swiftSettings: swiftSettings),

        // Pure: the replicated state machine (commands, validation, deterministic apply, snapshots).
        .target(name: "ClusterState", dependencies: ["ClusterModel"], swiftSettings: swiftSettings),

        // Pure: the leader's controllers (leases, failure detection, failover); they return proposals.
        .target(name: "Controllers", dependencies: ["ClusterModel", "ClusterState"], swiftSettings: swiftSettings),
        // Pure: the per-node memory balancer (dynamic memory): settings and demands in, assignments out.
        .target(name: "DynamicMemory", dependencies: ["ClusterModel"], swiftSettings: swiftSettings),
        // C: a simulated page's bytes made and checked eight words at a time with AVX-512.
        .target(name: "CPageStream"),
        // Pure + shell: the simulated guest — sparse memory pages with dirty tracking, workload
        // models, and the disk journal with its checker.
        .target(name: "Guests", dependencies: ["ClusterModel", "CPageStream"], swiftSettings: swiftSettings),

        // C: starting a child process that dies with its parent (prctl's parent-death signal).
        .target(name: "CSpawn"),
        // Pure + shell: real guests in QEMU — the machine and its command line (pure), the QMP
        // control protocol, the supervised process.
        .target(
            name: "QEMU",
            dependencies: [
                "CSpawn", .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        // Shell: Cluster Shared Volumes — a volume's metadata file (written only by its coordinator,
        // validated before a new coordinator serves it), metadata operations and redirected I/O.
        .target(
            name: "SharedVolumes",
            dependencies: [
                "ClusterModel", "ClusterState", "Guests", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // Shell: libnghttp2 (Debian libnghttp2-dev) does HTTP/2 framing, HPACK and flow control.
        .systemLibrary(name: "CNghttp2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),

        // Shell: HTTP/2 (h2c) server and client on SwiftNIO + libnghttp2, with an HTTP/1.1 fallback.
        .target(
            name: "HTTP2",
            dependencies: [
                "CNghttp2",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        // Pure + shell: live migration — the pre-copy planner (pure) and the page streams over
        // HTTP/2 between a migration's source and its target's shell.
        .target(
            name: "LiveMigration",
            dependencies: [
                "ClusterModel", "ClusterState", "Guests", "HTTP2", "QEMU",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        // Shell: the Raft loop generic over its state machine — driver, storage calls, the peer
        // transport on HTTP/2, leader contact. Knows nothing of VMs.
        .target(
            name: "RaftRuntime",
            dependencies: [
                "ClusterModel", "RaftCore", "RaftStorage", "HTTP2",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        // Pure: the JSON request and response types the server and every client share.
        .target(name: "FlotillaAPI", dependencies: ["ClusterModel"], swiftSettings: swiftSettings),

        // Shell: the API client — which node to call, requests, answers and errors.
        .target(
            name: "FlotillaClient",
            dependencies: [
                "ClusterModel", "FlotillaAPI", "HTTP2", .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        // Shell: the node daemon — configuration, API routes, heartbeats and fencing, the agent,
        // volumes, services and graceful shutdown.
        .target(
            name: "Node",
            dependencies: [
                "ClusterModel", "ClusterState", "Controllers", "RaftCore", "RaftStorage", "RaftRuntime", "HTTP2",
                "Guests", "SharedVolumes", "FlotillaAPI", "DynamicMemory", "LiveMigration", "QEMU",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),

        // Shell: what the command line prints and runs besides the API — text tables, the local cluster.
        .target(
            name: "FlotillaCLI",
            dependencies: [
                "ClusterModel", "FlotillaAPI", "FlotillaClient", "QEMU",
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings),

        // Test support: deterministic simulator, simulated network/clock/disk, history checkers.
        .target(name: "FlotillaTestKit", dependencies: ["ClusterModel", "RaftCore"], swiftSettings: swiftSettings),

        // The command-line entry point (argument parsing only).
        .executableTarget(
            name: "flotilla",
            dependencies: [
                "ClusterModel", "Node", "FlotillaAPI", "FlotillaClient", "FlotillaCLI", "QEMU",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),

        // Benchmark drivers: small servers and load generators that `make bench` runs.
        .executableTarget(
            name: "FlotillaBench",
            dependencies: [
                "HTTP2", "FlotillaTestKit", "Node", "FlotillaAPI", "FlotillaClient", "ClusterModel", "DynamicMemory",
                "Guests", "LiveMigration", "QEMU",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        // Test support for every test target: waiting for conditions (imports Testing).
        .target(name: "TestSupport", path: "Tests/TestSupport", swiftSettings: swiftSettings),

        .testTarget(name: "ClusterModelTests", dependencies: ["ClusterModel"], swiftSettings: swiftSettings),
        .testTarget(
            name: "ClusterStateTests", dependencies: ["ClusterState", "ClusterModel"], swiftSettings: swiftSettings),
        .testTarget(
            name: "ControllersTests", dependencies: ["Controllers", "ClusterState", "ClusterModel"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "DynamicMemoryTests", dependencies: ["DynamicMemory", "ClusterModel", "FlotillaTestKit"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "LiveMigrationTests", dependencies: ["LiveMigration", "ClusterModel"], swiftSettings: swiftSettings),
        .testTarget(
            name: "SharedVolumesTests",
            dependencies: ["SharedVolumes", "Guests", "ClusterModel", "FlotillaTestKit", "TestSupport"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "GuestsTests", dependencies: ["Guests", "ClusterModel", "FlotillaTestKit", "TestSupport"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "QEMUTests",
            dependencies: [
                "QEMU", "HTTP2", "LiveMigration", "ClusterModel", "TestSupport",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(name: "RaftCoreTests", dependencies: ["RaftCore", "ClusterModel"], swiftSettings: swiftSettings),
        .testTarget(
            name: "ProcessTests",
            dependencies: [
                "Node", "FlotillaAPI", "FlotillaClient", "FlotillaCLI", "FlotillaTestKit", "ClusterModel", "HTTP2",
                "Guests", "TestSupport", .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "SimulationTests", dependencies: ["FlotillaTestKit", "RaftCore", "ClusterModel"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "RaftStorageTests", dependencies: ["RaftStorage", "FlotillaTestKit"], swiftSettings: swiftSettings),
        .testTarget(
            name: "HTTP2Tests",
            dependencies: [
                "HTTP2", "TestSupport",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RaftRuntimeTests",
            dependencies: [
                "RaftRuntime", "ClusterModel", "RaftCore", "RaftStorage", "HTTP2", "FlotillaTestKit", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "NodeTests",
            dependencies: [
                "Node", "FlotillaAPI", "FlotillaClient", "FlotillaCLI", "ClusterModel", "ClusterState", "RaftCore",
                "RaftStorage", "HTTP2", "FlotillaTestKit", "TestSupport", "Guests",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "FlotillaAPITests", dependencies: ["FlotillaAPI"], swiftSettings: swiftSettings),
        .testTarget(
            name: "FlotillaCLITests", dependencies: ["FlotillaCLI", "FlotillaAPI", "FlotillaClient", "ClusterModel"],
            swiftSettings: swiftSettings),
    ],
    swiftLanguageModes: [.v6]
)
