//! Embedding images with a trained network: load, centre crop or pad, standardise, batch,
//! forward (inference mode), L2-normalised rows. Used by `validate`, `embed`, `compare` and
//! by training's per-epoch LFW evaluation, so they all compute the same numbers.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::prelude::*;
use image::RgbImage;
use rayon::prelude::*;

use crate::data::image_io::load_rgb;
use crate::data::preprocess::{center_crop_or_pad, standardize_into, Standardization};
use crate::model::inception_resnet_v1::InceptionResnetV1;

/// How images are turned into network input.
#[derive(Clone, Copy, Debug)]
pub struct EmbedOptions {
    pub image_size: u32,
    pub batch_size: usize,
    pub standardization: Standardization,
    /// Concatenate each embedding with that of the horizontally flipped image.
    pub use_flipped_images: bool,
}

/// Network input for one image: centre crop/pad to `size`, then standardise (CHW floats).
pub fn input_of(img: &RgbImage, size: u32, s: Standardization, flip: bool, out: &mut [f32]) {
    let mut c = center_crop_or_pad(img, size);
    if flip {
        image::imageops::flip_horizontal_in_place(&mut c);
    }
    standardize_into(&c, s, out);
}

/// Embeds already decoded images. `model` must be in inference mode (`model.valid()`);
/// rows are L2-normalised, `embedding_size` (x2 with flips) wide.
pub fn embed_images(model: &InceptionResnetV1, images: &[RgbImage], opts: &EmbedOptions, device: &Device) -> Vec<f32> {
    let size = opts.image_size as usize;
    let per = 3 * size * size;
    let dim = model.embedding_size();
    let views = if opts.use_flipped_images { 2 } else { 1 };
    let mut out = vec![0f32; images.len() * dim * views];
    for (bi, chunk) in images.chunks(opts.batch_size.max(1)).enumerate() {
        for flip in 0..views {
            let mut buf = vec![0f32; chunk.len() * per];
            buf.par_chunks_mut(per).zip(chunk.par_iter()).for_each(|(dst, img)| {
                input_of(img, opts.image_size, opts.standardization, flip == 1, dst);
            });
            let x = Tensor::<4>::from_data(TensorData::new(buf, [chunk.len(), 3, size, size]), device);
            let e = model.embed(x);
            let values: Vec<f32> = e.to_data().try_into_vec_as::<f32>().unwrap_or_default();
            for (i, row) in values.chunks_exact(dim).enumerate() {
                let r = bi * opts.batch_size.max(1) + i;
                let start = r * dim * views + flip * dim;
                out[start..start + dim].copy_from_slice(row);
            }
        }
    }
    out
}

/// Loads (in parallel) and embeds image files, reporting progress per batch through `tick`.
pub fn embed_paths(
    model: &InceptionResnetV1,
    paths: &[PathBuf],
    opts: &EmbedOptions,
    device: &Device,
    mut tick: impl FnMut(usize),
) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    for chunk in paths.chunks(opts.batch_size.max(1)) {
        let images: Vec<RgbImage> =
            chunk.par_iter().map(|p| load_rgb(p).map_err(anyhow::Error::from)).collect::<Result<_>>().context("cannot embed")?;
        out.extend(embed_images(model, &images, opts, device));
        tick(chunk.len());
    }
    Ok(out)
}
