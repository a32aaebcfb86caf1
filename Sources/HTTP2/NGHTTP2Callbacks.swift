// libnghttp2's C callbacks: top-level functions that forward to the connection handler in user data.
import CNghttp2

// nghttp2 calls these from inside `mem_recv`/`mem_send` on the connection's event loop. Each recovers
// the handler from the user-data pointer (passed unretained: the handler deletes the session before
// it goes away) and returns what the handler decides. No callback writes to the channel (`sendData`
// appends to the buffer the flush in progress writes).

/// Calls `body` with the connection in `userData` without retaining it (the session's owner keeps it alive).
@inline(__always)
private func withConnection<Result>(
    _ userData: UnsafeMutableRawPointer?,
    _ body: (NGHTTP2Connection) -> Result
) -> Result {
    Unmanaged<NGHTTP2Connection>.fromOpaque(userData!)._withUnsafeGuaranteedRef(body)
}

func nghttp2OnBeginHeaders(
    _ session: OpaquePointer?,
    _ frame: UnsafePointer<nghttp2_frame>?,
    _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    withConnection(userData) { $0.onBeginHeaders(frame!.pointee) }
}

func nghttp2OnHeader(
    _ session: OpaquePointer?,
    _ frame: UnsafePointer<nghttp2_frame>?,
    _ name: UnsafePointer<UInt8>?,
    _ nameLength: Int,
    _ value: UnsafePointer<UInt8>?,
    _ valueLength: Int,
    _ flags: UInt8,
    _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    withConnection(userData) {
        $0.onHeader(
            streamID: frame!.pointee.hd.stream_id,
            name: UnsafeBufferPointer(start: name, count: nameLength),
            value: UnsafeBufferPointer(start: value, count: valueLength)
        )
    }
}

func nghttp2OnFrameRecv(
    _ session: OpaquePointer?,
    _ frame: UnsafePointer<nghttp2_frame>?,
    _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    withConnection(userData) { $0.onFrameRecv(frame!.pointee) }
}

func nghttp2OnDataChunkRecv(
    _ session: OpaquePointer?,
    _ flags: UInt8,
    _ streamID: Int32,
    _ data: UnsafePointer<UInt8>?,
    _ length: Int,
    _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    withConnection(userData) { $0.onDataChunk(streamID: streamID, UnsafeRawBufferPointer(start: data, count: length)) }
}

func nghttp2OnStreamClose(
    _ session: OpaquePointer?,
    _ streamID: Int32,
    _ errorCode: UInt32,
    _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    withConnection(userData) { $0.onStreamClose(streamID: streamID, errorCode: errorCode) }
}

func nghttp2OnFrameSend(
    _ session: OpaquePointer?,
    _ frame: UnsafePointer<nghttp2_frame>?,
    _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    withConnection(userData) { $0.onFrameSend(frame!.pointee) }
}

func nghttp2OnFrameNotSend(
    _ session: OpaquePointer?,
    _ frame: UnsafePointer<nghttp2_frame>?,
    _ libErrorCode: Int32,
    _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    withConnection(userData) { $0.onFrameNotSend(frame!.pointee, libErrorCode: libErrorCode) }
}

func nghttp2ReadOutbound(
    _ session: OpaquePointer?,
    _ streamID: Int32,
    _ buffer: UnsafeMutablePointer<UInt8>?,
    _ length: Int,
    _ dataFlags: UnsafeMutablePointer<UInt32>?,
    _ source: UnsafeMutablePointer<nghttp2_data_source>?,
    _ userData: UnsafeMutableRawPointer?
) -> Int {
    withConnection(userData) {
        $0.readOutbound(
            streamID: streamID, into: UnsafeMutableRawBufferPointer(start: buffer, count: length), flags: dataFlags!)
    }
}

func nghttp2SendData(
    _ session: OpaquePointer?,
    _ frame: UnsafeMutablePointer<nghttp2_frame>?,
    _ header: UnsafePointer<UInt8>?,
    _ length: Int,
    _ source: UnsafeMutablePointer<nghttp2_data_source>?,
    _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    withConnection(userData) {
        $0.sendData(
            streamID: frame!.pointee.hd.stream_id, header: UnsafeRawBufferPointer(start: header, count: 9),
            length: length, padding: frame!.pointee.data.padlen)
    }
}

/// How long a DATA frame may be: as long as the peer's SETTINGS_MAX_FRAME_SIZE and the flow-control
/// windows allow (nghttp2 caps the answer at that), rather than nghttp2's own 16 KiB. A peer that
/// never raised the setting gets 16 KiB frames as before.
func nghttp2ReadLength(
    _ session: OpaquePointer?,
    _ frameType: UInt8,
    _ streamID: Int32,
    _ sessionWindow: Int32,
    _ streamWindow: Int32,
    _ remoteMaxFrameSize: UInt32,
    _ userData: UnsafeMutableRawPointer?
) -> Int {
    Int(remoteMaxFrameSize)
}

/// Fills a callback table with the functions above; nghttp2 copies the table into each new session.
func installNGHTTP2Callbacks(_ callbacks: OpaquePointer) {
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, nghttp2OnBeginHeaders)
    nghttp2_session_callbacks_set_on_header_callback(callbacks, nghttp2OnHeader)
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, nghttp2OnFrameRecv)
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, nghttp2OnDataChunkRecv)
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, nghttp2OnStreamClose)
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, nghttp2OnFrameSend)
    nghttp2_session_callbacks_set_on_frame_not_send_callback(callbacks, nghttp2OnFrameNotSend)
    nghttp2_session_callbacks_set_send_data_callback(callbacks, nghttp2SendData)
    nghttp2_session_callbacks_set_data_source_read_length_callback(callbacks, nghttp2ReadLength)
}
