//! Networks (burn modules) and the `--model_def` registry.
//!
//! - [`inception_resnet_v1`]: Inception-ResNet-v1 (full and small variants), its config,
//!   cost model and L2 weight penalty;
//! - [`autocast`]: convolutions in bf16 on GPU backends (`--precision bf16` there);
//! - [`blocks`]: the conv-BN-ReLU unit and the residual / reduction blocks;
//! - [`registry`]: `--model_def` names -> configurations;
//! - [`export`]: writing a network as ONNX, a facenet-pytorch state dict or one `.safetensors`;
//! - [`tf`]: the reference's TensorFlow checkpoints and frozen graphs, read;
//! - [`load`]: model files (checkpoint folders, facenet-pytorch state dicts) and loading a
//!   network from them for inference or as pretrained weights.
//!
//! burn 0.22 facts used here (train/inference mode, gradients, optimizers, saving) are
//! collected in `src/model/BURN_NOTES.md`.

pub mod autocast;
pub mod blocks;
pub mod export;
pub mod inception_resnet_v1;
pub mod load;
pub mod registry;
pub mod tf;

pub use inception_resnet_v1::{
    l2_normalize, InceptionResnetV1, InceptionResnetV1Arch, InceptionResnetV1Config, InceptionResnetV1Output, ModelCost,
};
pub use load::{load_inference_model, load_model, ModelMeta};
pub use registry::{config_from_def, known_models, model_from_def, ModelDefError, ModelOptions};
