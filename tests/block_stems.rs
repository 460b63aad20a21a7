//! Speed of the residual blocks' fused opening 1x1 convolutions (`blocks::forward_stems`)
//! against one layer at a time: a benchmark, ignored by default.

// the allocator of the `facenet` binary, so that timings see the same allocation costs
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use burn::tensor::{Device, Tensor};

/// Forward + backward of each residual block of Inception-ResNet-v1 at batch 32 and 160x160 input (17x17, 8x8 and 3x3 maps:
/// the training step of `bench train`), the branches' opening 1x1 convolutions fused
/// (`blocks::forward_stems`) against one layer at a time, alternated in one process. A
/// benchmark, not a test:
/// `cargo test --release --test block_stems -- --ignored --nocapture block_stems_speed`.
#[test]
#[ignore]
fn block_stems_speed() {
    use burn::tensor::activation::relu;
    use burn::tensor::Distribution;
    use facenet::model::blocks::{forward_chain, forward_stems, BasicConv2d, Block17, Block35, Block8, BnSettings};
    use std::time::Instant;
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    let device = Device::flex().autodiff();
    let bn = BnSettings { epsilon: 1e-3, momentum: 0.005, train_gamma: false };
    let b35 = Block35::new(256, 32, 0.17, &bn, &device);
    let b17 = Block17::new(896, 128, 0.1, &bn, &device);
    let b8 = Block8::new(1792, 192, 0.2, true, &bn, &device);
    type Stems = fn(&[&BasicConv2d], Tensor<4>) -> Vec<Tensor<4>>;
    fn unfused(stems: &[&BasicConv2d], x: Tensor<4>) -> Vec<Tensor<4>> {
        stems.iter().map(|l| l.forward(x.clone())).collect()
    }
    let run = |name: &str, c: usize, s: usize, f: &dyn Fn(Tensor<4>, Stems) -> Tensor<4>| {
        let x = Tensor::<4>::random([32, c, s, s], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let mut t = [Vec::new(), Vec::new()];
        for rep in 0..8 {
            for (k, stems) in [forward_stems as Stems, unfused as Stems].into_iter().enumerate() {
                let t0 = Instant::now();
                let y = f(x.clone(), stems);
                let g = y.sum().backward();
                let _ = x.grad(&g).unwrap().into_data();
                if rep > 0 {
                    t[k].push(t0.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        for v in &mut t {
            v.sort_by(f64::total_cmp);
        }
        println!("{name}: fused stems {:.1} ms, one layer at a time {:.1} ms (medians of 7)", t[0][3], t[1][3]);
    };
    run("block35", 256, 17, &|x, st| {
        let s = st(&[&b35.branch0, &b35.branch1[0], &b35.branch2[0]], x.clone());
        let x1 = forward_chain(&b35.branch1[1..], s[1].clone());
        let x2 = forward_chain(&b35.branch2[1..], s[2].clone());
        relu(x + b35.conv2d.forward(Tensor::cat(vec![s[0].clone(), x1, x2], 1)).mul_scalar(0.17))
    });
    run("block17", 896, 8, &|x, st| {
        let s = st(&[&b17.branch0, &b17.branch1[0]], x.clone());
        let x1 = forward_chain(&b17.branch1[1..], s[1].clone());
        relu(x + b17.conv2d.forward(Tensor::cat(vec![s[0].clone(), x1], 1)).mul_scalar(0.1))
    });
    run("block8", 1792, 3, &|x, st| {
        let s = st(&[&b8.branch0, &b8.branch1[0]], x.clone());
        let x1 = forward_chain(&b8.branch1[1..], s[1].clone());
        relu(x + b8.conv2d.forward(Tensor::cat(vec![s[0].clone(), x1], 1)).mul_scalar(0.2))
    });
}
