// The nghttp2 session of one connection: made and deleted, bytes in and out, and the calls that submit frames.
import CNghttp2
import NIOCore

/// A handle on one libnghttp2 session, which does a connection's framing, HPACK and flow control.
///
/// A value with nothing but the pointer: copying it does not copy the session. The connection's state
/// machine carries it and hands it back once, for `delete()`, when the handler is removed. Every call
/// is made on the connection's event loop. `receive` and `send` must not be called from inside an nghttp2 callback (they would
/// re-enter the session); the `submit…` calls, `consume`, `resumeData` and the queries may be.
struct NGHTTP2Session: Equatable {
    let pointer: OpaquePointer

    /// A handle on a session made elsewhere (or, in a test of what only carries sessions, a stand-in).
    init(pointer: OpaquePointer) {
        self.pointer = pointer
    }

    /// A server session with our callbacks and the server's SETTINGS queued; nil if nghttp2 fails.
    init?(server: ServerSessionSettings, userData: UnsafeMutableRawPointer) {
        let settings = [
            settingsEntry(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, server.maxConcurrentStreams),
            settingsEntry(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, server.initialStreamWindowSize),
            settingsEntry(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, server.maxHeaderListSize),
            settingsEntry(NGHTTP2_SETTINGS_MAX_FRAME_SIZE, server.maxFrameSize),
        ]
        let made = Self.make(settings: settings, connectionWindow: server.connectionWindowSize) { callbacks, option in
            var session: OpaquePointer?
            guard nghttp2_session_server_new2(&session, callbacks, userData, option) == 0 else { return nil }
            return session
        }
        guard let made else { return nil }
        self.pointer = made
    }

    /// A client session with our callbacks and the client's SETTINGS queued; nil if nghttp2 fails.
    init?(client: ClientSessionSettings, userData: UnsafeMutableRawPointer) {
        let settings = [
            settingsEntry(NGHTTP2_SETTINGS_ENABLE_PUSH, 0),
            settingsEntry(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, client.initialStreamWindowSize),
            settingsEntry(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, client.maxHeaderListSize),
        ]
        let made = Self.make(settings: settings, connectionWindow: client.connectionWindowSize) { callbacks, option in
            // The stream limit assumed until the peer's SETTINGS arrive (nghttp2's default is none):
            // the least RFC 9113 §6.5.2 recommends a peer allow.
            nghttp2_option_set_peer_max_concurrent_streams(option, 100)
            var session: OpaquePointer?
            guard nghttp2_session_client_new2(&session, callbacks, userData, option) == 0 else { return nil }
            return session
        }
        guard let made else { return nil }
        self.pointer = made
    }

    /// Makes a session with `new`, then queues our SETTINGS and widens the connection's window.
    /// WINDOW_UPDATEs are not automatic: credit goes back with `consume` as bodies are read.
    private static func make(
        settings: [nghttp2_settings_entry],
        connectionWindow: Int,
        new: (_ callbacks: OpaquePointer, _ option: OpaquePointer) -> OpaquePointer?
    ) -> OpaquePointer? {
        var callbacks: OpaquePointer?
        var option: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks,
            nghttp2_option_new(&option) == 0, let option
        else {
            return nil
        }
        defer {
            nghttp2_session_callbacks_del(callbacks)
            nghttp2_option_del(option)
        }
        installNGHTTP2Callbacks(callbacks)
        nghttp2_option_set_no_auto_window_update(option, 1)
        guard let session = new(callbacks, option) else { return nil }
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), settings, settings.count)
        nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Int32(connectionWindow))
        return session
    }

    func delete() {
        nghttp2_session_del(self.pointer)
    }

    /// nghttp2's description of one of its (negative) error codes.
    static func describe(error code: Int32) -> String {
        String(cString: nghttp2_strerror(code))
    }

    // MARK: Bytes in and out

    /// Feeds inbound bytes to nghttp2, which runs the callbacks for every frame in them. A negative
    /// result is fatal for the connection (bad preface, flooding, a callback's failure).
    func receive(_ buffer: ByteBuffer) -> Int {
        buffer.withUnsafeReadableBytes { bytes in
            nghttp2_session_mem_recv(self.pointer, bytes.bindMemory(to: UInt8.self).baseAddress, bytes.count)
        }
    }

    /// Appends nghttp2's outbound frames to the connection's `writeBuffer` until it (with the
    /// connection's `gathered` buffers) holds `limit` bytes or nghttp2 has no more. DATA frames
    /// are appended during mem_send by the connection's `sendData`; everything else is what
    /// mem_send returns. Returns 0, or nghttp2's (fatal) error code.
    func send(into connection: NGHTTP2Connection, limit: Int) -> Int {
        while connection.writeBuffer!.readableBytes + connection.gatheredBytes < limit {
            var chunk: UnsafePointer<UInt8>?
            let count = nghttp2_session_mem_send(self.pointer, &chunk)
            if count < 0 { return count }
            guard count > 0, let chunk else { break }
            // The pointer is only valid until the next mem_send call: copy it now.
            connection.writeBuffer!.writeBytes(UnsafeRawBufferPointer(start: chunk, count: count))
        }
        return 0
    }

    /// nghttp2 wants neither to read nor to write: GOAWAY was exchanged and the streams are done.
    var isFinished: Bool {
        nghttp2_session_want_read(self.pointer) == 0 && nghttp2_session_want_write(self.pointer) == 0
    }

    // MARK: Streams and flow control

    /// Returns `count` bytes of `streamID`'s DATA to the peer as flow-control credit.
    func consume(streamID: Int32, _ count: Int) {
        nghttp2_session_consume(self.pointer, streamID, count)
    }

    /// Wakes a body whose data source answered NGHTTP2_ERR_DEFERRED.
    func resumeData(streamID: Int32) {
        nghttp2_session_resume_data(self.pointer, streamID)
    }

    /// The stream exists and the peer has not ended its side yet.
    func peerIsStillSending(streamID: Int32) -> Bool {
        nghttp2_session_get_stream_remote_close(self.pointer, streamID) == 0
    }

    func submitReset(streamID: Int32, code: UInt32) {
        nghttp2_submit_rst_stream(self.pointer, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, code)
    }

    /// Queues a PING; false if nghttp2 could not.
    func submitPing() -> Bool {
        nghttp2_submit_ping(self.pointer, UInt8(NGHTTP2_FLAG_NONE.rawValue), nil) == 0
    }

    /// Queues GOAWAY(NO_ERROR) naming the last stream processed: the peer opens no new streams.
    func submitGoaway() {
        nghttp2_submit_goaway(
            self.pointer,
            UInt8(NGHTTP2_FLAG_NONE.rawValue),
            nghttp2_session_get_last_proc_stream_id(self.pointer),
            NGHTTP2_NO_ERROR.rawValue,
            nil,
            0
        )
    }

    /// Queues a response's HEADERS; with `hasBody` its DATA comes from `readOutbound`. Returns 0 or
    /// nghttp2's error.
    func submitResponse(streamID: Int32, _ response: HTTPResponse, hasBody: Bool) -> Int32 {
        withHeaderBlock(pseudo: [], status: response.status, headers: response.headers, body: response.body) {
            nva, count in
            if hasBody {
                var provider = nghttp2_data_provider(
                    source: nghttp2_data_source(ptr: nil), read_callback: nghttp2ReadOutbound)
                return nghttp2_submit_response(self.pointer, streamID, nva, count, &provider)
            }
            return nghttp2_submit_response(self.pointer, streamID, nva, count, nil)
        }
    }

    /// Queues a request's HEADERS; with `hasBody` its DATA comes from `readOutbound`. `body` gives
    /// the content-length (nil: none). Returns the new stream's id, or nghttp2's (negative) error.
    func submitRequest(pseudo: [(String, String)], headers: HTTPFields, body: HTTPBody?, hasBody: Bool) -> Int32 {
        withHeaderBlock(pseudo: pseudo, status: nil, headers: headers, body: body) { nva, count in
            if hasBody {
                var provider = nghttp2_data_provider(
                    source: nghttp2_data_source(ptr: nil), read_callback: nghttp2ReadOutbound)
                return nghttp2_submit_request(self.pointer, nil, nva, count, &provider, nil)
            }
            return nghttp2_submit_request(self.pointer, nil, nva, count, nil, nil)
        }
    }
}

private func settingsEntry(_ id: nghttp2_settings_id, _ value: Int) -> nghttp2_settings_entry {
    nghttp2_settings_entry(settings_id: Int32(id.rawValue), value: UInt32(clamping: value))
}

/// Whether HTTP/2 forbids this (lower-case) field name (RFC 9113 §8.2.2); such fields are dropped.
private func isConnectionSpecific(_ name: String) -> Bool {
    switch name {
    case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host": true
    default: false
    }
}

/// Lays out the pseudo-header fields (`:status` first when given), the regular fields and (for a
/// body complete in memory) `content-length` in temporary storage and calls `call` with an
/// nghttp2_nv array pointing into it. nghttp2 copies names and values during submit, so the storage
/// only needs to live for the call; small blocks stay on the stack, and the status and the length
/// are written as digits straight into it, so a response costs no allocation and no `String` here.
private func withHeaderBlock<Result>(
    pseudo: [(String, String)],
    status: Int?,
    headers: HTTPFields,
    body: HTTPBody?,
    _ call: (UnsafePointer<nghttp2_nv>, Int) -> Result
) -> Result {
    // A body given in memory gets its content-length; a streamed or pushed one (nil) has none.
    var contentLength: Int?
    if case .buffer(let buffer)? = body, headers.first(lowercasedName: "content-length") == nil {
        contentLength = buffer.readableBytes
    }
    var byteCount = 0
    var fieldCount = pseudo.count
    for (name, value) in pseudo {
        byteCount += name.utf8.count + value.utf8.count
    }
    if status != nil {
        byteCount += 7 + maxDecimalCount
        fieldCount += 1
    }
    for field in headers where !isConnectionSpecific(field.name) {
        byteCount += field.name.utf8.count + field.value.utf8.count
        fieldCount += 1
    }
    if contentLength != nil {
        byteCount += 14 + maxDecimalCount
        fieldCount += 1
    }
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(byteCount, 1)) { bytes in
        withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: max(fieldCount, 1)) { nva in
            var offset = 0
            var index = 0
            // Named apart from `copy(_: String)`: a literal argument would pick that one.
            func copy(static text: StaticString) -> (UnsafeMutablePointer<UInt8>, Int) {
                let start = bytes.baseAddress! + offset
                start.update(from: text.utf8Start, count: text.utf8CodeUnitCount)
                offset += text.utf8CodeUnitCount
                return (start, text.utf8CodeUnitCount)
            }
            func copy(_ text: String) -> (UnsafeMutablePointer<UInt8>, Int) {
                let start = bytes.baseAddress! + offset
                let (_, written) = UnsafeMutableBufferPointer(rebasing: bytes[offset...]).initialize(from: text.utf8)
                offset += written
                return (start, written)
            }
            func copy(decimal value: Int) -> (UnsafeMutablePointer<UInt8>, Int) {
                let start = bytes.baseAddress! + offset
                let count = writeDecimal(value, to: start)
                offset += count
                return (start, count)
            }
            func add(_ name: (UnsafeMutablePointer<UInt8>, Int), _ value: (UnsafeMutablePointer<UInt8>, Int)) {
                nva.baseAddress!.advanced(by: index).initialize(
                    to: nghttp2_nv(
                        name: name.0,
                        value: value.0,
                        namelen: name.1,
                        valuelen: value.1,
                        flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)
                    )
                )
                index += 1
            }
            if let status {
                add(copy(static: ":status"), copy(decimal: status))
            }
            for (name, value) in pseudo {
                add(copy(name), copy(value))
            }
            for field in headers where !isConnectionSpecific(field.name) {
                add(copy(field.name), copy(field.value))
            }
            if let contentLength {
                add(copy(static: "content-length"), copy(decimal: contentLength))
            }
            return call(nva.baseAddress!, index)
        }
    }
}

/// The most characters an `Int` takes in decimal (`Int.min`, with its minus sign): the room the
/// header block leaves for a number, so that it is not counted twice.
let maxDecimalCount = 20

/// Writes `value` in decimal ASCII at `start` (at most `maxDecimalCount` bytes); returns the count.
@discardableResult
func writeDecimal(_ value: Int, to start: UnsafeMutablePointer<UInt8>) -> Int {
    var magnitude = value.magnitude
    // The digit count by comparison (no division), then the digits from the last.
    var digits = 1
    var power: UInt = 10
    while digits < 20 && magnitude >= power {
        digits += 1
        power = power &* 10
    }
    let count = value < 0 ? digits + 1 : digits
    var position = count
    repeat {
        position -= 1
        let (quotient, remainder) = magnitude.quotientAndRemainder(dividingBy: 10)
        start[position] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: remainder)
        magnitude = quotient
    } while magnitude > 0
    if value < 0 { start[0] = UInt8(ascii: "-") }
    return count
}
