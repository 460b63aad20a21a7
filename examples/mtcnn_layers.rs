//! Per-layer timing of the MTCNN convolutions, PReLUs and pools at the sizes of the
//! group photo (level 0 of the pyramid, 889 R-Net crops, 64 O-Net crops), best of REPS
//! runs: `cargo run --release --example mtcnn_layers [name filter]`. A dev tool for the
//! burn-flex kernels (patches/burn-flex); not part of the product.
use burn::module::Module;
use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::PReluConfig;
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;

fn time<F: FnMut() -> Tensor<4>>(name: &str, mac: f64, mut f: F) {
    let _ = f();
    let mut best = f64::MAX;
    for _ in 0..reps() {
        let t = Instant::now();
        let o = f();
        let _ = o.dims();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("{name:32} {:8.2} ms {:7.1} GF/s", best * 1e3, 2.0 * mac / best / 1e9);
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    let d = Device::flex();
    // as `align` and `detect` run (FACENET_WINOGRAD=0: the im2col kernel)
    burn_flex::set_conv_winograd(std::env::var("FACENET_WINOGRAD").as_deref() != Ok("0"));
    let cases: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
        // name, n, cin, h, w, cout, k
        ("pnet conv1 532x768", 1, 3, 532, 768, 10, 3),
        ("pnet conv2 265x383", 1, 10, 265, 383, 16, 3),
        ("pnet conv3 263x381", 1, 16, 263, 381, 32, 3),
        ("rnet conv1 889x24", 889, 3, 24, 24, 28, 3),
        ("rnet conv2 889x11", 889, 28, 11, 11, 48, 3),
        ("rnet conv3 889x4", 889, 48, 4, 4, 64, 2),
        ("onet conv1 64x48", 64, 3, 48, 48, 32, 3),
        ("onet conv2 64x23", 64, 32, 23, 23, 64, 3),
        ("onet conv3 64x10", 64, 64, 10, 10, 64, 3),
    ];
    let only = std::env::args().nth(1).unwrap_or_default();
    for &(name, n, cin, h, w, cout, k) in cases {
        if !name.contains(only.as_str()) {
            continue;
        }
        let conv = Conv2dConfig::new([cin, cout], [k, k]).init(&d);
        let x: Tensor<4> = Tensor::random([n, cin, h, w], Distribution::Uniform(-1.0, 1.0), &d);
        let (ho, wo) = (h - k + 1, w - k + 1);
        let mac = (n * ho * wo * cout * cin * k * k) as f64;
        time(name, mac, || conv.forward(x.clone()));
        let y = conv.forward(x.clone());
        let pr = PReluConfig::new().with_num_parameters(cout).init(&d);
        time(&format!("{name} prelu"), 0.0, || pr.forward(y.clone()));
        let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).with_ceil_mode(true).init();
        time(&format!("{name} pool"), 0.0, || pool.forward(y.clone()));
        let _ = conv.clone().into_record();
    }
}
fn reps() -> usize {
    std::env::var("REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(7)
}
