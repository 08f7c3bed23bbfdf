//! Caps that bound memory and time on hostile input.

/// Largest file `inspect_path` reads.
pub const MAX_FILE_BYTES: u64 = 512 << 20;
/// How far into a file the fallback XMP scan looks.
pub const MAX_SCAN_BYTES: usize = 64 << 20;
/// All XMP packets of a file together.
pub const MAX_XMP_BYTES: usize = 4 << 20;
/// One EXIF block.
pub const MAX_EXIF_BYTES: usize = 4 << 20;
/// Text entries kept (PNG text chunks, JPEG comments).
pub const MAX_TEXT_ENTRIES: usize = 1000;
/// One text entry after decompression.
pub const MAX_TEXT_BYTES: usize = 4 << 20;
/// PNG / RIFF chunks walked.
pub const MAX_PNG_CHUNKS: usize = 100_000;
/// JPEG segments walked before the scan.
pub const MAX_JPEG_SEGMENTS: usize = 10_000;
/// Pixels decoded for the watermark and stealth-info readers.
pub const MAX_PIXELS: u64 = 40_000_000;
/// Bytes the image decoder may allocate.
pub const MAX_DECODE_ALLOC: u64 = 512 << 20;
/// Largest input handed to the C2PA SDK.
pub const MAX_C2PA_INPUT: usize = 256 << 20;
/// TIFF pages (IFD chain) and SubIFDs handed to the C2PA reader.
pub const MAX_TIFF_PAGES: usize = 1024;
pub const MAX_TIFF_SUBFILES: usize = 1024;
