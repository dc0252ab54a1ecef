//! JPEG and PNG bytes to 8-bit RGB, with pure-Rust decoders (zune-jpeg, zune-png): no system
//! library. The format is told by the file's first bytes, not its name. Grayscale becomes three
//! equal channels, CMYK/YCCK JPEGs are converted by the decoder, 16-bit PNGs keep their high byte,
//! and alpha is dropped (as torchvision's loader does with PIL's `convert("RGB")`).

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;
use zune_png::PngDecoder;

/// A decoded image: `pixels` is HWC, 3 bytes per pixel, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// Larger images are refused rather than allocated (a corrupt header can claim anything).
const MAX_SIDE: usize = 16_384;

/// An image decoded down to the rows a view needs: `img` may hold fewer rows than the file's
/// `height`.
#[derive(Debug, Clone, PartialEq)]
pub struct Top {
    pub img: Rgb,
    pub height: usize,
}

/// Decodes at least the rows `0..rows(width, height)` of an image, each exactly as a whole
/// decode gives it. A baseline JPEG is decoded only that far, to the end of its row of MCUs, and
/// one row of MCUs more that is dropped (its chroma is upsampled against the edge, not the rows
/// below): its frame header's height is lowered, and the decoder stops there. Decoding costs
/// about its share of the rows, and a random crop rarely reaches the bottom of the image. Other
/// images (progressive, PNG) are decoded whole.
pub fn decode_top(
    mut bytes: Vec<u8>,
    rows: impl FnOnce(usize, usize) -> usize,
) -> Result<Top, String> {
    if let Some(frame) = baseline_frame(&bytes) {
        let want = rows(frame.width, frame.height).clamp(1, frame.height);
        let keep = (want.div_ceil(frame.mcu_rows) + 1) * frame.mcu_rows;
        if keep < frame.height {
            let at = frame.height_at..frame.height_at + 2;
            let full: [u8; 2] = bytes[at.clone()].try_into().unwrap_or_default();
            bytes[at.clone()]
                .copy_from_slice(&u16::try_from(keep).unwrap_or(u16::MAX).to_be_bytes());
            match decode_rgb(&bytes) {
                Ok(mut img) if img.height == keep => {
                    // The margin row of MCUs is upsampled against the edge, not the rows below.
                    img.height = keep - frame.mcu_rows;
                    img.pixels.truncate(img.height * img.width * 3);
                    return Ok(Top {
                        img,
                        height: frame.height,
                    });
                }
                // Whatever went wrong is for the whole image's decode to say.
                _ => bytes[at].copy_from_slice(&full),
            }
        }
    }
    let img = decode_rgb(&bytes)?;
    let height = img.height;
    Ok(Top { img, height })
}

/// What the partial decode needs of a baseline (or extended sequential, Huffman) JPEG's frame.
struct Frame {
    width: usize,
    height: usize,
    /// Pixel rows per MCU row (8 x the largest vertical sampling factor).
    mcu_rows: usize,
    /// Offset of the frame header's two height bytes.
    height_at: usize,
}

/// The frame header of a JPEG coded sequentially with Huffman tables in one pass (SOF0/SOF1),
/// found by walking the marker segments before the first scan; `None` for anything else
/// (progressive, arithmetic, a height given later by DNL, a malformed header).
fn baseline_frame(b: &[u8]) -> Option<Frame> {
    let mut i = 2;
    loop {
        let (&ff, &marker) = (b.get(i)?, b.get(i + 1)?);
        if ff != 0xff {
            return None;
        }
        if marker == 0xff {
            i += 1; // fill byte
            continue;
        }
        let len = usize::from(u16::from_be_bytes([*b.get(i + 2)?, *b.get(i + 3)?]));
        match marker {
            0xc0 | 0xc1 => {
                let seg = b.get(i + 4..i + 2 + len)?;
                let height = usize::from(u16::from_be_bytes([seg[1], seg[2]]));
                let width = usize::from(u16::from_be_bytes([seg[3], seg[4]]));
                let comps = usize::from(*seg.get(5)?);
                let vmax = (0..comps)
                    .map(|k| seg.get(6 + 3 * k + 1).map(|s| usize::from(s & 0x0f)))
                    .try_fold(1, |m, v| v.map(|v| m.max(v)))?;
                return (height > 0 && width > 0 && (1..=4).contains(&vmax)).then_some(Frame {
                    width,
                    height,
                    mcu_rows: 8 * vmax,
                    height_at: i + 5,
                });
            }
            // Markers that stand alone, without a length.
            0x01 | 0xd0..=0xd7 => {
                i += 2;
                continue;
            }
            // Any other frame type, or a scan before a frame.
            0xc2..=0xcf if marker != 0xc4 && marker != 0xc8 && marker != 0xcc => return None,
            0xda | 0xd9 => return None,
            _ => i += 2 + len,
        }
    }
}

/// Decodes a JPEG or PNG file's bytes; the error says what is wrong, for the warning naming it.
pub fn decode_rgb(bytes: &[u8]) -> Result<Rgb, String> {
    let options = DecoderOptions::default()
        .set_max_width(MAX_SIDE)
        .set_max_height(MAX_SIDE);
    let img = if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        jpeg(bytes, options)?
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        png(bytes, options)?
    } else {
        let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(format!(
            "not a JPEG or PNG image (it starts with bytes {})",
            if head.is_empty() {
                "none: the file is empty".to_string()
            } else {
                head.join(" ")
            }
        ));
    };
    if img.width == 0 || img.height == 0 || img.pixels.len() != img.width * img.height * 3 {
        return Err(format!(
            "decoded to an unusable {}x{} image",
            img.width, img.height
        ));
    }
    Ok(img)
}

fn jpeg(bytes: &[u8], options: DecoderOptions) -> Result<Rgb, String> {
    let options = options.jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut d = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    d.decode_headers().map_err(|e| format!("bad JPEG: {e:?}"))?;
    let info = d.info().ok_or("bad JPEG: no image header")?;
    let (width, height) = (usize::from(info.width), usize::from(info.height));
    let n = d.output_buffer_size().ok_or("bad JPEG: no image size")?;
    let mut out = vec![0u8; n];
    d.decode_into(&mut out)
        .map_err(|e| format!("bad JPEG: {e:?}"))?;
    // The decoder gives RGB for every input colourspace it knows; anything else is made RGB here.
    let channels = n / (width * height).max(1);
    Ok(Rgb {
        width,
        height,
        pixels: to_rgb(out, channels, ColorSpace::RGB).ok_or("bad JPEG: unexpected channels")?,
    })
}

fn png(bytes: &[u8], options: DecoderOptions) -> Result<Rgb, String> {
    let options = options.png_set_strip_to_8bit(true);
    let mut d = PngDecoder::new_with_options(ZCursor::new(bytes), options);
    d.decode_headers().map_err(|e| format!("bad PNG: {e:?}"))?;
    let (width, height) = d.dimensions().ok_or("bad PNG: no image header")?;
    let colour = d.colorspace().ok_or("bad PNG: no colour type")?;
    let n = d.output_buffer_size().ok_or("bad PNG: no image size")?;
    let mut out = vec![0u8; n];
    d.decode_into(&mut out)
        .map_err(|e| format!("bad PNG: {e:?}"))?;
    let channels = n / (width * height).max(1);
    Ok(Rgb {
        width,
        height,
        pixels: to_rgb(out, channels, colour).ok_or("bad PNG: unexpected colour type")?,
    })
}

/// Interleaved 8-bit pixels of `channels` channels to RGB: luma (+ alpha) is repeated, alpha
/// dropped.
fn to_rgb(pixels: Vec<u8>, channels: usize, colour: ColorSpace) -> Option<Vec<u8>> {
    match (channels, colour) {
        (3, _) => Some(pixels),
        (1, _) => Some(pixels.iter().flat_map(|&l| [l, l, l]).collect()),
        (2, _) => Some(pixels.chunks_exact(2).flat_map(|p| [p[0]; 3]).collect()),
        (4, _) => Some(
            pixels
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect(),
        ),
        _ => None,
    }
}
