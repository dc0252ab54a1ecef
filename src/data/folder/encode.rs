//! Writing images (what the bench, `convert --to DIR` and the tests make their folders from), with
//! the same pure-Rust crates family as the decoders.

use zune_core::bit_depth::BitDepth;
use zune_core::colorspace::ColorSpace;
use zune_core::options::EncoderOptions;
use zune_png::PngEncoder;

/// A baseline JPEG of interleaved RGB pixels (`width` x `height` x 3) at `quality` (1-100).
pub fn encode_jpeg(
    rgb: &[u8],
    width: usize,
    height: usize,
    quality: u8,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let (w, h) = (
        u16::try_from(width).map_err(|_| "JPEG width above 65535")?,
        u16::try_from(height).map_err(|_| "JPEG height above 65535")?,
    );
    jpeg_encoder::Encoder::new(&mut out, quality)
        .encode(rgb, w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| format!("JPEG encoding failed: {e}"))?;
    Ok(out)
}

/// A lossless PNG of interleaved 8-bit pixels: `channels` 1 (gray), 2 (gray + alpha), 3 (RGB)
/// or 4 (RGBA).
pub fn encode_png(
    pixels: &[u8],
    width: usize,
    height: usize,
    channels: usize,
) -> Result<Vec<u8>, String> {
    let colour = match channels {
        1 => ColorSpace::Luma,
        2 => ColorSpace::LumaA,
        3 => ColorSpace::RGB,
        4 => ColorSpace::RGBA,
        n => return Err(format!("PNG with {n} channels")),
    };
    let options = EncoderOptions::default()
        .set_width(width)
        .set_height(height)
        .set_depth(BitDepth::Eight)
        .set_colorspace(colour);
    let mut out = Vec::new();
    PngEncoder::new(pixels, options)
        .encode(&mut out)
        .map_err(|e| format!("PNG encoding failed: {e:?}"))?;
    Ok(out)
}
