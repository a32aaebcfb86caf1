// Which node's API a client calls: a flag, the environment, or the local cluster's configuration.
public import ClusterModel
public import Foundation

/// Where the CLI looks for a node's API, in order.
public enum APILocation {
    /// `--api`, else `FLOTILLA_API`, else the client addresses in the local cluster's
    /// `cluster.json` (all of them, so a stopped node is skipped), else 127.0.0.1:7101.
    /// Throws a message for an address that is not host:port.
    public static func candidates(flag: String?, environment: String?, localConfig: Data?) throws -> [Endpoint] {
        if let text = flag ?? environment {
            let trimmed = text.replacingOccurrences(of: "http://", with: "")
            guard let endpoint = Endpoint(parsing: trimmed.hasSuffix("/") ? String(trimmed.dropLast()) : trimmed)
            else {
                let source = flag != nil ? "--api" : "FLOTILLA_API"
                throw APIError(status: nil, message: "\(source) \(text) is not host:port (e.g. 127.0.0.1:7101)")
            }
            return [endpoint]
        }
        struct Config: Decodable {
            struct Member: Decodable { var client: String }
            var members: [Member]
        }
        if let localConfig, let config = try? JSONDecoder().decode(Config.self, from: localConfig) {
            let endpoints = config.members.compactMap { Endpoint(parsing: $0.client) }
            if !endpoints.isEmpty { return endpoints }
        }
        return [Endpoint(host: "127.0.0.1", port: 7101)]
    }
}
