//! Encoding model inputs as base64 PNG data for [`crate::Example`].

use base64::Engine as _;

use crate::error::{ReportError, Result};

/// Encodes an image as PNG and returns the PNG bytes in standard base64, without a
/// `data:` prefix (the form [`crate::Example`] stores).
///
/// `data` holds `channels × height × width` values in **channel-planar (CHW) order**, the
/// layout of an image tensor of shape `[channels, height, width]`; values are intensities in
/// `[0, 1]` (divide by the model's upper bound first if it is not 1). Values outside `[0, 1]`
/// are clamped and NaN becomes 0. `channels` must be 1 (grey) or 3 (RGB).
///
/// ```
/// let grey = robust_report::png_base64(2, 1, 1, &[0.0, 1.0]).unwrap();
/// assert!(grey.starts_with("iVBORw0KGgo")); // the PNG signature, in base64
/// ```
pub fn png_base64(width: u32, height: u32, channels: u32, data: &[f32]) -> Result<String> {
    let fail = |reason: String| ReportError::Image {
        width,
        height,
        channels,
        reason,
    };
    if width == 0 || height == 0 {
        return Err(fail("the image is empty".into()));
    }
    let plane = width as usize * height as usize;
    let expected = plane * channels as usize;
    if data.len() != expected {
        return Err(fail(format!(
            "expected {expected} values (channels × height × width), got {}",
            data.len()
        )));
    }
    let to_u8 = |x: f32| -> u8 {
        if x.is_nan() {
            0
        } else {
            (x.clamp(0.0, 1.0) * 255.0).round() as u8
        }
    };
    let color = match channels {
        1 => image::ExtendedColorType::L8,
        3 => image::ExtendedColorType::Rgb8,
        other => return Err(fail(format!("{other} channels: only 1 or 3 are supported"))),
    };
    // CHW → interleaved HWC.
    let mut pixels = vec![0u8; expected];
    for c in 0..channels as usize {
        for i in 0..plane {
            pixels[i * channels as usize + c] = to_u8(data[c * plane + i]);
        }
    }
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &pixels,
        width,
        height,
        color,
    )
    .map_err(|e| fail(e.to_string()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(png))
}

/// Maps a perturbation (adversarial minus clean input) to `[0, 1]` for display: zero becomes
/// mid-grey (0.5) and the largest absolute component becomes 0 or 1. Pass the result to
/// [`png_base64`]. An all-zero perturbation is all mid-grey.
pub fn perturbation_to_unit(delta: &[f32]) -> Vec<f32> {
    let max = delta
        .iter()
        .filter(|x| x.is_finite())
        .fold(0.0f32, |m, x| m.max(x.abs()));
    delta
        .iter()
        .map(|&x| {
            if max == 0.0 || !x.is_finite() {
                0.5
            } else {
                0.5 + 0.5 * x / max
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(b64: &str) -> image::DynamicImage {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap()
    }

    #[test]
    fn rgb_planar_input_decodes_to_the_same_pixels() {
        // 2x1 image: pixel 0 red, pixel 1 blue; planes R, G, B.
        let data = [1.0, 0.0, /* G */ 0.0, 0.0, /* B */ 0.0, 1.0];
        let img = decode(&png_base64(2, 1, 3, &data).unwrap()).to_rgb8();
        assert_eq!(img.dimensions(), (2, 1));
        assert_eq!(img.get_pixel(0, 0).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(1, 0).0, [0, 0, 255]);
    }

    #[test]
    fn grey_values_are_clamped_and_nan_is_black() {
        let img = decode(&png_base64(4, 1, 1, &[-1.0, 0.5, 2.0, f32::NAN]).unwrap()).to_luma8();
        let v: Vec<u8> = img.pixels().map(|p| p.0[0]).collect();
        assert_eq!(v, vec![0, 128, 255, 0]);
    }

    #[test]
    fn wrong_length_and_channel_count_are_errors() {
        let err = png_base64(2, 2, 3, &[0.0; 5]).unwrap_err();
        assert!(err.to_string().contains("expected 12 values"), "{err}");
        assert!(png_base64(1, 1, 2, &[0.0; 2]).is_err());
        assert!(png_base64(0, 1, 1, &[]).is_err());
    }

    #[test]
    fn perturbation_maps_zero_to_grey_and_extremes_to_black_and_white() {
        assert_eq!(
            perturbation_to_unit(&[0.0, 0.1, -0.2]),
            vec![0.5, 0.75, 0.0]
        );
        assert_eq!(perturbation_to_unit(&[0.0, 0.0]), vec![0.5, 0.5]);
    }
}
