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
