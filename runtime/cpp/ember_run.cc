// ember_run: run an ember-exported model.so from C++ with the TVM runtime only.
//
//   ember_run model.so in0.npy [in1.npy ...] [--out out0.npy ...]
//
// Reads the ember metadata embedded in the library (the JSON string `ember_artifact_metadata`),
// checks the inputs against it (count, dtype, rank, static dims, symbolic dims bound
// consistently and within their ranges), runs the Relax VM's `main` on the CPU and writes each
// output to the matching --out file as .npy. Exit codes: 0 ok, 1 model or input error, 2 usage.
#include <dlfcn.h>
#include <elf.h>
#include <sched.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

namespace {

constexpr int64_t kFormatVersion = 1;  // must match ember/runtime/metadata.py FORMAT_VERSION
constexpr const char* kMetadataSymbol = "ember_artifact_metadata";
constexpr int kPooledAllocator = 2;
constexpr size_t kAlignment = 64;  // TVM kernels assume 64-byte aligned buffers

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct ModelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- .npy: the numpy format, version 1-3 headers, little-endian C-order arrays only ----

struct DType {
  const char* descr;  // numpy type string
  const char* name;   // ember dtype name
  DLDataType dl;
};

const DType kDTypes[] = {
    {"<f4", "float32", {kDLFloat, 32, 1}}, {"<f8", "float64", {kDLFloat, 64, 1}},
    {"<f2", "float16", {kDLFloat, 16, 1}}, {"<i8", "int64", {kDLInt, 64, 1}},
    {"<i4", "int32", {kDLInt, 32, 1}},     {"<i2", "int16", {kDLInt, 16, 1}},
    {"|i1", "int8", {kDLInt, 8, 1}},       {"|u1", "uint8", {kDLUInt, 8, 1}},
    {"<u2", "uint16", {kDLUInt, 16, 1}},   {"<u4", "uint32", {kDLUInt, 32, 1}},
    {"<u8", "uint64", {kDLUInt, 64, 1}},   {"|b1", "bool", {kDLBool, 8, 1}},
};

const DType& DTypeByDescr(const std::string& descr, const std::string& path) {
  for (const DType& d : kDTypes) {
    if (descr == d.descr) return d;
  }
  throw ModelError(path + ": unsupported .npy dtype '" + descr + "' (ember_run reads little-endian "
                   "float16/32/64, int8-64, uint8-64 and bool)");
}

const DType& DTypeByCode(DLDataType dl) {
  for (const DType& d : kDTypes) {
    if (d.dl.code == dl.code && d.dl.bits == dl.bits && d.dl.lanes == dl.lanes) return d;
  }
  throw ModelError("the model returned a dtype ember_run cannot write as .npy");
}

struct AlignedAlloc {
  void AllocData(DLTensor* t) {
    size_t size = (ffi::GetDataSize(*t) + kAlignment - 1) / kAlignment * kAlignment;
    t->data = std::aligned_alloc(kAlignment, size == 0 ? kAlignment : size);
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

// the value of `'key': value` in a numpy header dict, up to the next top-level comma
std::string HeaderField(const std::string& header, const std::string& key, const std::string& path) {
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) throw ModelError(path + ": .npy header has no '" + key + "'");
  at = header.find(':', at) + 1;
  while (header[at] == ' ') ++at;
  size_t end = header[at] == '(' ? header.find(')', at) + 1 : header.find_first_of(",}", at);
  return header.substr(at, end - at);
}

ffi::Tensor ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError("cannot open input file " + path);
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) {
    throw ModelError(path + " is not a .npy file (save inputs with numpy.save)");
  }
  uint32_t header_len = 0;
  unsigned char len_bytes[4] = {0, 0, 0, 0};
  in.read(reinterpret_cast<char*>(len_bytes), magic[6] == 1 ? 2 : 4);
  header_len = len_bytes[0] | (len_bytes[1] << 8) | (len_bytes[2] << 16) | (len_bytes[3] << 24);
  std::string header(header_len, '\0');
  in.read(header.data(), header_len);
  std::string descr = HeaderField(header, "descr", path);
  const DType& dtype = DTypeByDescr(descr.substr(1, descr.size() - 2), path);
  if (HeaderField(header, "fortran_order", path) != "False") {
    throw ModelError(path + ": Fortran-ordered arrays are not supported; save a C-ordered array");
  }
  std::vector<int64_t> shape;
  std::stringstream dims(HeaderField(header, "shape", path));
  for (char c; dims >> c;) {
    if (std::isdigit(static_cast<unsigned char>(c))) {
      dims.putback(c);
      int64_t d;
      dims >> d;
      shape.push_back(d);
    }
  }
  ffi::Tensor t = ffi::Tensor::FromNDAlloc(AlignedAlloc(), ffi::ShapeView(shape.data(), shape.size()),
                                           dtype.dl, DLDevice{kDLCPU, 0});
  size_t bytes = ffi::GetDataSize(t);
  if (!in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(bytes))) {
    throw ModelError(path + ": truncated .npy data");
  }
  return t;
}

void WriteNpy(const std::string& path, const ffi::Tensor& t) {
  std::ostringstream header;
  header << "{'descr': '" << DTypeByCode(t.dtype()).descr << "', 'fortran_order': False, 'shape': (";
  for (int64_t d : t.shape()) header << d << (t.ndim() == 1 ? "," : ", ");
  header << "), }";
  std::string text = header.str();
  size_t total = 10 + text.size() + 1;
  text.append((kAlignment - total % kAlignment) % kAlignment, ' ');
  text.push_back('\n');
  std::ofstream out(path, std::ios::binary);
  if (!out) throw UsageError("cannot write output file " + path);
  out.write("\x93NUMPY\x01\x00", 8);
  uint16_t len = static_cast<uint16_t>(text.size());
  char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(len_bytes, 2);
  out << text;
  out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(ffi::GetDataSize(t)));
}

// ---- metadata: read through dlsym, checked like ember.runtime.inputs ----

// dlopen dies with SIGBUS on a truncated library: check that the headers' ranges fit the file
void CheckElf(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError("cannot open model file " + path);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.size() < sizeof(Elf64_Ehdr) || data.compare(0, 4, ELFMAG) != 0 ||
      data[EI_CLASS] != ELFCLASS64) {
    throw ModelError(path + " is not a 64-bit shared library; pass a .so written by `ember compile`");
  }
  Elf64_Ehdr eh;
  std::memcpy(&eh, data.data(), sizeof(eh));
  uint64_t end = std::max<uint64_t>(eh.e_phoff + uint64_t{eh.e_phentsize} * eh.e_phnum,
                                    eh.e_shoff + uint64_t{eh.e_shentsize} * eh.e_shnum);
  for (int i = 0; end <= data.size() && i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, data.data() + eh.e_phoff + i * eh.e_phentsize, sizeof(ph));
    end = std::max<uint64_t>(end, ph.p_offset + ph.p_filesz);
  }
  if (end > data.size()) {
    throw ModelError(path + " is truncated (" + std::to_string(data.size()) + " bytes, its headers need " +
                     std::to_string(end) + "); copy or export it again");
  }
}

ffi::json::Object ReadMetadata(const std::string& path) {
  CheckElf(path);
  void* handle = dlopen(path.c_str(), RTLD_LAZY | RTLD_LOCAL);
  if (handle == nullptr) {
    throw ModelError("cannot load " + path + ": " + dlerror() + "; the file is damaged or not a library");
  }
  const char* text = static_cast<const char*>(dlsym(handle, kMetadataSymbol));
  if (text == nullptr) {
    throw ModelError(path + " is not an ember model (no " + kMetadataSymbol +
                     " symbol); export one with `ember compile`");
  }
  ffi::String error;
  ffi::json::Value doc = ffi::json::Parse(text, &error);
  if (!error.empty()) throw ModelError(path + ": ember metadata is not valid JSON");
  auto meta = doc.cast<ffi::json::Object>();
  if (meta.at("format").cast<ffi::String>() != "ember-artifact" ||
      meta.at("format_version").cast<int64_t>() != kFormatVersion) {
    throw ModelError(path + ": artifact format " +
                     std::to_string(meta.at("format_version").cast<int64_t>()) +
                     " but this ember_run reads format " + std::to_string(kFormatVersion) +
                     "; rebuild ember_run from the ember that exported the model");
  }
  return meta;
}

std::string Describe(const ffi::json::Object& spec) {
  std::string text = std::string(spec.at("name").cast<ffi::String>()) + ": " +
                     std::string(spec.at("dtype").cast<ffi::String>()) + "[";
  auto shape = spec.at("shape").cast<ffi::json::Array>();
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) text += ",";
    text += shape[i].type_index() == ffi::TypeIndex::kTVMFFIInt
                ? std::to_string(shape[i].cast<int64_t>())
                : std::string(shape[i].cast<ffi::String>());
  }
  return text + "]";
}

void CheckRange(const ffi::json::Object& meta, const std::string& where, const std::string& name,
                int64_t got) {
  auto ranges = meta.at("symbol_ranges").cast<ffi::json::Object>();
  if (ranges.count(ffi::String(name)) == 0) return;
  auto range = ranges.at(ffi::String(name)).cast<ffi::json::Array>();
  int64_t lo = range[0].cast<int64_t>();
  bool has_hi = range[1] != nullptr;
  int64_t hi = has_hi ? range[1].cast<int64_t>() : 0;
  if (got < lo || (has_hi && got > hi)) {
    throw ModelError(where + ": dim " + name + "=" + std::to_string(got) + " is outside [" +
                     std::to_string(lo) + ", " + (has_hi ? std::to_string(hi) : "inf") + "]");
  }
}

void CheckInputs(const ffi::json::Object& meta, const std::vector<ffi::Tensor>& inputs) {
  auto specs = meta.at("inputs").cast<ffi::json::Array>();
  if (specs.size() != inputs.size()) {
    std::string expected;
    for (const ffi::Any& s : specs) expected += (expected.empty() ? "" : ", ") + Describe(s.cast<ffi::json::Object>());
    throw ModelError("expected " + std::to_string(specs.size()) + " inputs (" + expected + "), got " +
                     std::to_string(inputs.size()));
  }
  std::map<std::string, int64_t> env;
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto spec = specs[i].cast<ffi::json::Object>();
    std::string where = "input '" + std::string(spec.at("name").cast<ffi::String>()) +
                        "' (expected " + Describe(spec) + ")";
    std::string dtype = DTypeByCode(inputs[i].dtype()).name;
    if (dtype != std::string(spec.at("dtype").cast<ffi::String>())) {
      throw ModelError(where + ": got dtype " + dtype);
    }
    auto shape = spec.at("shape").cast<ffi::json::Array>();
    if (static_cast<size_t>(inputs[i].ndim()) != shape.size()) {
      throw ModelError(where + ": got rank " + std::to_string(inputs[i].ndim()));
    }
    for (size_t axis = 0; axis < shape.size(); ++axis) {
      int64_t got = inputs[i].shape()[axis];
      int64_t expected = got;
      if (shape[axis].type_index() == ffi::TypeIndex::kTVMFFIInt) {
        expected = shape[axis].cast<int64_t>();
      } else {
        std::string name = shape[axis].cast<ffi::String>();
        if (env.count(name) == 0) CheckRange(meta, where, name, got);
        expected = env.emplace(name, got).first->second;
      }
      if (got != expected) {
        throw ModelError(where + ": axis " + std::to_string(axis) + " is " + std::to_string(got) +
                         " but must be " + std::to_string(expected));
      }
    }
  }
}

// ---- run ----

struct Args {
  std::string model;
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
};

Args ParseArgs(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << "usage: ember_run model.so [in0.npy ...] [--out out0.npy ...]\n"
                   "Runs an ember-exported model on the CPU; inputs in graph order, outputs\n"
                   "written in graph order to the --out files.\n"
                   "example: ember_run model.so x.npy --out y.npy\n";
      std::exit(0);
    } else if (arg == "--out" || arg == "-o") {
      if (++i == argc) throw UsageError("--out needs a file name");
      args.outputs.push_back(argv[i]);
    } else if (args.model.empty()) {
      args.model = arg;
    } else {
      args.inputs.push_back(arg);
    }
  }
  if (args.model.empty()) throw UsageError("missing the model .so");
  // a name without '/' would make dlopen search the library path instead of the directory
  if (args.model.find('/') == std::string::npos) args.model = "./" + args.model;
  return args;
}

// TVM sizes its thread pool, unless TVM_NUM_THREADS or OMP_NUM_THREADS is set, as half the logical
// CPUs on x86 (it assumes two hyper-threads per core): use every physical core this process may
// run on instead, as ember's Python runtime does (runtime/threads.py).
void SizeThreadPool() {
  if (std::getenv("TVM_NUM_THREADS") != nullptr || std::getenv("OMP_NUM_THREADS") != nullptr) return;
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;
  std::set<std::string> cores;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    std::string topology = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::ifstream package(topology + "physical_package_id"), core(topology + "core_id");
    std::string package_id, core_id;
    // no sysfs topology: count logical CPUs
    cores.insert(package >> package_id && core >> core_id ? package_id + "/" + core_id : std::to_string(cpu));
  }
  if (!cores.empty()) setenv("TVM_NUM_THREADS", std::to_string(cores.size()).c_str(), 0);
}

int Run(const Args& args) {
  SizeThreadPool();
  ffi::json::Object meta = ReadMetadata(args.model);
  std::vector<ffi::Tensor> inputs;
  for (const std::string& path : args.inputs) inputs.push_back(ReadNpy(path));
  CheckInputs(meta, inputs);
  size_t num_outputs = meta.at("outputs").cast<ffi::json::Array>().size();
  if (args.outputs.size() > num_outputs) {
    throw UsageError("the model has " + std::to_string(num_outputs) + " outputs but " +
                     std::to_string(args.outputs.size()) + " --out files were given");
  }
  ffi::Module lib = ffi::Module::LoadFromFile(args.model);
  ffi::Module vm = lib->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
  vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, kPooledAllocator);
  std::vector<ffi::AnyView> packed(inputs.begin(), inputs.end());
  ffi::Any result;
  vm->GetFunction("main").value().CallPacked(packed.data(), static_cast<int32_t>(packed.size()), &result);
  auto outputs = result.cast<ffi::Array<ffi::Tensor>>();
  auto specs = meta.at("outputs").cast<ffi::json::Array>();
  for (size_t i = 0; i < outputs.size(); ++i) {
    const ffi::Tensor& t = outputs[i];
    std::cout << "output " << i << " " << std::string(specs[i].cast<ffi::json::Object>().at("name").cast<ffi::String>())
              << ": " << DTypeByCode(t.dtype()).name << "[";
    for (int d = 0; d < t.ndim(); ++d) std::cout << (d ? "," : "") << t.shape()[d];
    std::cout << "]";
    if (i < args.outputs.size()) {
      WriteNpy(args.outputs[i], t);
      std::cout << " -> " << args.outputs[i];
    }
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(ParseArgs(argc, argv));
  } catch (const UsageError& err) {
    std::cerr << "ember_run: error: " << err.what() << "\nhint: ember_run --help\n";
    return 2;
  } catch (const ffi::Error& err) {
    std::cerr << "ember_run: error: " << err.kind() << ": " << err.message() << "\n";
    return 1;
  } catch (const std::exception& err) {
    std::cerr << "ember_run: error: " << err.what() << "\n";
    return 1;
  }
}
