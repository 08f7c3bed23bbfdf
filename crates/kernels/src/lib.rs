//! The CPU kernels of synthscan's networks, apart from the networks themselves (as burn keeps
//! its kernels in backend crates): depends on burn only, never on the synthscan library.
//!
//! - [`vector`]: SIMD lanes (AVX-512, or AVX2 + FMA, where the CPU has it) and the kernel
//!   dispatch;
//! - [`matrix`]: the matrix products (gemm) every op reduces to;
//! - [`pointwise`]: 1×1 convolutions on weights packed at load time, epilogue and residual sum
//!   fused;
//! - [`winograd`]: F(2×2, 3×3) transforms for 3×3 stride-1 convolutions;
//! - [`fused`]: burn backend extensions for training on the flex backend — a convolution unit
//!   (conv + pool + batch-norm + ReLU) as one op, the depthwise, dense (1×1) and batch-norm ops
//!   with their backward passes;
//! - [`engine`]: the compiled inference path ([`engine::CnnEngine`]): channels-last ops with
//!   batch-norm folded in at load time, built from burn modules.
//!
//! Every op is tested against burn's reference ops to 1e-4.

pub mod engine;
#[cfg(feature = "flex")]
pub mod fused;
pub mod matrix;
mod parts;
pub mod pointwise;
pub mod vector;
pub mod winograd;
