# Built from remote_read_native.c (see there); absent when the install had no C compiler.
def streamed_window(
    body: bytes, start_ms: int, end_ms: int, max_frame_bytes: int, /
) -> tuple[list[bytes], list[int], bytes, bytes, dict[int, int]] | None: ...
