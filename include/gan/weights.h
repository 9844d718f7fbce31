// Weights as other tools keep them: plain state_dicts that PyTorch's torch.load(weights_only=True) reads, safetensors
// files, and NumPy .npy arrays (latent vectors, images) - written and read.
#pragma once
#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace torch::nn {
class Module;
}

namespace gan {

// Parameter and buffer names with their values, in the module's order (parameters first, as named_parameters and
// named_buffers list them): main.0.weight, main.1.weight, main.1.running_mean, ...
using StateDict = std::vector<std::pair<std::string, at::Tensor>>;

// The module's parameters and buffers as contiguous float32/int64 CPU copies.
StateDict state_dict(torch::nn::Module& module);

// A PyTorch zip archive holding one plain dict {name: tensor}: torch.load(path, weights_only=True) returns it in
// PyTorch 1.13 and 2.x (LibTorch's own pickle_save tags dicts with a type that weights_only refuses). Atomic.
void save_pt(const std::string& path, const StateDict& weights);

// A safetensors file: u64 little-endian header length, the JSON header {name: {dtype, shape, data_offsets}, ...,
// "__metadata__": {text: text}} padded with spaces to 8 bytes, then the tensors' bytes back to back. Atomic.
void save_safetensors(const std::string& path, const StateDict& weights,
                      const std::map<std::string, std::string>& metadata = {});

// Reads a weights file by its content: a safetensors file, or a file of torch.save holding a dict of tensors
// (torch.save(model.state_dict()), an OrderedDict, or a plain dict as save_pt writes; or a checkpoint dict with a
// "state_dict" entry), in the zip layout of PyTorch >= 1.6 or the legacy one before it, saved from any device (read
// without Python by src/io/pickle.cpp, which runs nothing from the file). Names that all start with "module." (a
// network saved inside DataParallel or DistributedDataParallel) lose that prefix. `metadata` receives a safetensors
// file's __metadata__. Throws UserError(kExitCheckpoint) naming the file and what is wrong with it.
StateDict load_weights_file(const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

// The tensor of a file of torch.save holding one tensor (or the first tensor of a dict), on the CPU. Throws
// UserError(kExitCheckpoint) naming the file.
at::Tensor load_tensor_file(const std::string& path);

// Copies `weights` into `module` (every parameter and buffer, nothing else): a missing, unexpected or differently
// shaped entry is one UserError(kExitCheckpoint) line naming `what` and listing them.
void load_state_dict(torch::nn::Module& module, const StateDict& weights, const std::string& what);

// NumPy .npy (format 1.0, little-endian, C order): float32, float64 or int64 arrays.
void save_npy(const std::string& path, const at::Tensor& array);
at::Tensor load_npy(const std::string& path);

}  // namespace gan
