//! Convolutions in a reduced float type, PyTorch-autocast style: the GPU backends'
//! `--precision bf16`. Each convolution casts its input, weight and bias to the type, runs in
//! it, and casts its output back to f32; batch norm, activations, residual sums, the fully
//! connected layers, the losses and the optimiser stay f32, and the weights are only ever
//! stored in f32 (the cast is part of the graph, so their gradients arrive in f32: the "master
//! weights" of mixed-precision training).
//!
//! bf16 keeps f32's exponent range, so no loss scaling is needed (f16 would need it, and burn
//! 0.22 has no gradient scaler: not offered). The CPU backend's bf16 is another mechanism
//! (its GEMMs round their inputs, `crate::util::precision`), so on the CPU this module does
//! nothing unless a test turns it on.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::tensor::module::conv2d as conv2d_op;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{FloatDType, Tensor};

use crate::util::precision::autocast_dtype;

/// `layer.forward(x)`, in the autocast type when one is set.
pub fn conv(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    conv_in(layer, x, autocast_dtype())
}

/// `layer.forward(x)` computed in `dtype` (`None`: as it is), output f32.
pub fn conv_in(layer: &Conv2d, x: Tensor<4>, dtype: Option<FloatDType>) -> Tensor<4> {
    let Some(dt) = dtype else { return layer.forward(x) };
    // the same layer (padding, stride, ...) over cast views of its parameters: same ids, and
    // the casts stay in the graph, so gradients reach the f32 weights
    let mut cast = layer.clone();
    cast.weight = Param::initialized(layer.weight.id, layer.weight.val().cast(dt));
    cast.bias = layer.bias.as_ref().map(|b| Param::initialized(b.id, b.val().cast(dt)));
    cast.forward(x.cast(dt)).cast(FloatDType::F32)
}

/// The functional convolution, in the autocast type when one is set.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, options: ConvOptions<2>) -> Tensor<4> {
    match autocast_dtype() {
        None => conv2d_op(x, weight, bias, options),
        Some(dt) => conv2d_op(x.cast(dt), weight.cast(dt), bias.map(|b| b.cast(dt)), options).cast(FloatDType::F32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::PaddingConfig2d;
    use burn::tensor::{DType, Device, Distribution};

    #[test]
    fn a_bf16_convolution_is_close_to_f32_and_its_gradients_are_f32() {
        let ad = Device::flex().autodiff();
        let layer = Conv2dConfig::new([8, 16], [3, 3]).with_padding(PaddingConfig2d::Same).with_bias(true).init(&ad);
        let x = Tensor::<4>::random([2, 8, 12, 12], Distribution::Normal(0.0, 1.0), &ad);
        let f32_out = conv_in(&layer, x.clone(), None);
        let bf16_out = conv_in(&layer, x, Some(FloatDType::BF16));
        assert_eq!(bf16_out.dtype(), DType::F32);
        assert_eq!(bf16_out.dims(), f32_out.dims());
        let scale: f32 = f32_out.clone().abs().max().into_scalar();
        let diff: f32 = (bf16_out.clone() - f32_out.clone()).abs().max().into_scalar();
        // bf16 keeps 8 significant bits: products rounded at ~4e-3 relative
        assert!(diff > 0.0 && diff < 3e-2 * scale, "max difference {diff} at scale {scale}");
        let grads = bf16_out.sum().backward();
        let g = layer.weight.grad(&grads).expect("the f32 weight has a gradient");
        assert_eq!(g.dtype(), DType::F32);
        let g32 = layer.weight.grad(&f32_out.sum().backward()).unwrap();
        let gs: f32 = g32.clone().abs().max().into_scalar();
        let gd: f32 = (g - g32).abs().max().into_scalar();
        assert!(gd < 3e-2 * gs, "weight gradient: max difference {gd} at scale {gs}");
        assert!(layer.bias.as_ref().unwrap().grad(&grads).is_some());
    }
}
