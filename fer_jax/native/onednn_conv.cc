// oneDNN 2-D convolutions as XLA FFI custom calls (CPU, float32 or bfloat16, no dilation or groups):
// the forward pass, the input gradient and the weight gradient, in XLA's NHWC / HWIO layouts.
// Built on first use by fer_jax/onednn_conv.py; one cached set of primitives per shape.
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <omp.h>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using Tag = memory::format_tag;

namespace {

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// x [n, h, w, c], kernel [kh, kw, c, o], strides (rows, columns), padding (top, left,
// bottom, right), element type.
using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, memory::data_type>;

struct Geometry {
  int64_t stride_h, stride_w, top, left, bottom, right;
};

struct Conv {
  memory::desc src, kernel, dst;  // the XLA buffers' layouts
  dnnl::convolution_forward::primitive_desc forward_pd;
  dnnl::convolution_backward_data::primitive_desc data_pd;
  dnnl::convolution_backward_weights::primitive_desc weights_pd;
  dnnl::convolution_forward forward;
  dnnl::convolution_backward_data data;
  dnnl::convolution_backward_weights weights;
};

const Conv& Lookup(const Key& key) {
  static std::mutex mutex;
  static std::map<Key, std::unique_ptr<Conv>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = cache.find(key);
  if (found != cache.end()) return *found->second;
  auto [n, h, w, c, kh, kw, o, sh, sw, top, left, bottom, right, type] = key;
  const memory::dims strides{sh, sw}, pad_l{top, left}, pad_r{bottom, right};
  auto conv = std::make_unique<Conv>();
  conv->src = memory::desc({n, c, h, w}, type, Tag::nhwc);
  conv->kernel = memory::desc({o, c, kh, kw}, type, Tag::hwio);
  conv->dst = memory::desc({n, o, (h + top + bottom - kh) / sh + 1, (w + left + right - kw) / sw + 1},
                           type, Tag::nhwc);
  const memory::desc any_kernel({o, c, kh, kw}, type, Tag::any);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto algorithm = dnnl::algorithm::convolution_direct;
  conv->forward_pd = dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, algorithm, conv->src, any_kernel, conv->dst,
      strides, pad_l, pad_r, attr);
  conv->data_pd = dnnl::convolution_backward_data::primitive_desc(
      Engine(), algorithm, conv->src, any_kernel, conv->dst, strides, pad_l, pad_r,
      conv->forward_pd, attr);
  conv->weights_pd = dnnl::convolution_backward_weights::primitive_desc(
      Engine(), algorithm, conv->src, any_kernel, conv->dst, strides, pad_l, pad_r,
      conv->forward_pd, attr);
  conv->forward = dnnl::convolution_forward(conv->forward_pd);
  conv->data = dnnl::convolution_backward_data(conv->data_pd);
  conv->weights = dnnl::convolution_backward_weights(conv->weights_pd);
  return *(cache[key] = std::move(conv));
}

// oneDNN's type for an XLA element type (float32 and bfloat16 only).
memory::data_type TypeOf(ffi::DataType type) {
  if (type == ffi::DataType::F32) return memory::data_type::f32;
  if (type == ffi::DataType::BF16) return memory::data_type::bf16;
  throw std::invalid_argument("element type must be float32 or bfloat16");
}

// The key of a convolution of input ``x_dims`` with a kernel of ``kernel_dims``.
template <typename Dims>
Key MakeKey(const Dims& x_dims, const Dims& kernel_dims, const Geometry& g,
            ffi::DataType type) {
  return {x_dims[0], x_dims[1], x_dims[2], x_dims[3], kernel_dims[0], kernel_dims[1],
          kernel_dims[3], g.stride_h, g.stride_w, g.top, g.left, g.bottom, g.right,
          TypeOf(type)};
}

dnnl::stream& Stream() {
  thread_local dnnl::stream stream(Engine());
  return stream;
}

memory Wrap(const memory::desc& desc, void* data) { return memory(desc, Engine(), data); }

// ``plain`` (the XLA layout) as ``wanted``: itself, or a reordered copy held by ``storage``.
memory InLayout(const memory& plain, const memory::desc& wanted, memory* storage) {
  if (plain.get_desc() == wanted) return plain;
  *storage = memory(wanted, Engine());
  dnnl::reorder(plain, *storage).execute(Stream(), const_cast<memory&>(plain), *storage);
  return *storage;
}

// oneDNN's OpenMP team size for calls from this (XLA) thread: devices that run at once share
// the cores instead of each starting a team of all of them.
thread_local int threads = 0;

template <typename PrimitiveDesc>
void Execute(const dnnl::primitive& primitive, const PrimitiveDesc& pd,
             std::unordered_map<int, memory> args) {
  if (threads > 0) omp_set_num_threads(threads);
  std::vector<char> scratch(pd.scratchpad_desc().get_size());
  args.insert({DNNL_ARG_SCRATCHPAD, Wrap(pd.scratchpad_desc(), scratch.data())});
  primitive.execute(Stream(), args);
  Stream().wait();
}

template <typename Body>
ffi::Error Guarded(Body body) {
  try {
    body();
    return ffi::Error::Success();
  } catch (const std::exception& error) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN: ") + error.what());
  }
}

// The passes that read the kernel: forward (``in`` = x, ``out`` = y) or the input gradient
// (``in`` = dy, ``out`` = dx).
template <bool kForward>
ffi::Error KernelPass(ffi::AnyBuffer in, ffi::AnyBuffer kernel,
                      ffi::Result<ffi::AnyBuffer> out, int64_t stride_h, int64_t stride_w,
                      int64_t top, int64_t left, int64_t bottom, int64_t right,
                      int64_t num_threads) {
  return Guarded([&] {
    threads = static_cast<int>(num_threads);
    const Conv& conv = Lookup(MakeKey(kForward ? in.dimensions() : out->dimensions(),
                                      kernel.dimensions(),
                                      {stride_h, stride_w, top, left, bottom, right},
                                      kernel.element_type()));
    memory kernel_storage;
    auto plain_kernel = Wrap(conv.kernel, kernel.untyped_data());
    auto in_memory = Wrap(kForward ? conv.src : conv.dst, in.untyped_data());
    auto out_memory = Wrap(kForward ? conv.dst : conv.src, out->untyped_data());
    if (kForward) {
      Execute(conv.forward, conv.forward_pd,
              {{DNNL_ARG_SRC, in_memory},
               {DNNL_ARG_WEIGHTS, InLayout(plain_kernel, conv.forward_pd.weights_desc(),
                                           &kernel_storage)},
               {DNNL_ARG_DST, out_memory}});
    } else {
      Execute(conv.data, conv.data_pd,
              {{DNNL_ARG_DIFF_DST, in_memory},
               {DNNL_ARG_WEIGHTS, InLayout(plain_kernel, conv.data_pd.weights_desc(),
                                           &kernel_storage)},
               {DNNL_ARG_DIFF_SRC, out_memory}});
    }
  });
}

ffi::Error KernelGradient(ffi::AnyBuffer x, ffi::AnyBuffer dy,
                          ffi::Result<ffi::AnyBuffer> dkernel, int64_t stride_h,
                          int64_t stride_w, int64_t top, int64_t left, int64_t bottom,
                          int64_t right, int64_t num_threads) {
  return Guarded([&] {
    threads = static_cast<int>(num_threads);
    const Conv& conv = Lookup(MakeKey(x.dimensions(), dkernel->dimensions(),
                                      {stride_h, stride_w, top, left, bottom, right},
                                      x.element_type()));
    auto plain = Wrap(conv.kernel, dkernel->untyped_data());
    const auto& wanted = conv.weights_pd.diff_weights_desc();
    auto result = wanted == conv.kernel ? plain : memory(wanted, Engine());
    Execute(conv.weights, conv.weights_pd,
            {{DNNL_ARG_SRC, Wrap(conv.src, x.untyped_data())},
             {DNNL_ARG_DIFF_DST, Wrap(conv.dst, dy.untyped_data())},
             {DNNL_ARG_DIFF_WEIGHTS, result}});
    if (!(wanted == conv.kernel)) {
      dnnl::reorder(result, plain).execute(Stream(), result, plain);
      Stream().wait();
    }
  });
}

}  // namespace

#define FER_CONV_BINDING                                                        \
  ffi::Ffi::Bind()                                                              \
      .Arg<ffi::AnyBuffer>()                                             \
      .Arg<ffi::AnyBuffer>()                                             \
      .Ret<ffi::AnyBuffer>()                                             \
      .Attr<int64_t>("stride_h")                                                \
      .Attr<int64_t>("stride_w")                                                \
      .Attr<int64_t>("pad_top")                                                 \
      .Attr<int64_t>("pad_left")                                                \
      .Attr<int64_t>("pad_bottom")                                              \
      .Attr<int64_t>("pad_right")                                               \
      .Attr<int64_t>("threads")

XLA_FFI_DEFINE_HANDLER_SYMBOL(FerConvForward, KernelPass<true>, FER_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(FerConvInputGradient, KernelPass<false>, FER_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(FerConvKernelGradient, KernelGradient, FER_CONV_BINDING);
