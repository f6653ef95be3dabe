// The reference library's 4-bit codes for the kernel tests: tests/data/quantize_4bit_cases.bin,
// written from the reference fixture by tests/dump_quantize_4bit_cases.py (its docstring gives
// the layout), read without torch.
#pragma once
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "bnb/codes_4bit.h"
#include "bnb/dtype.h"

namespace bnb_test {

using bnb::DType;
using bnb::QuantType4bit;

struct Fixture4bitCase {
  std::string name;
  QuantType4bit quant_type;
  DType dtype;
  int64_t blocksize;
  std::vector<uint8_t> packed;
  std::vector<float> absmax;
  std::vector<uint8_t> dequant;  // raw values in dtype; empty when not stored
};

struct Fixture4bit {
  std::vector<float> input;
  std::vector<Fixture4bitCase> cases;
};

template <typename T> inline bool read_pod(std::ifstream& f, T& v) { return bool(f.read(reinterpret_cast<char*>(&v), sizeof v)); }
template <typename T> inline bool read_array(std::ifstream& f, std::vector<T>& v, uint32_t count) {
  v.resize(count);
  return count == 0 || bool(f.read(reinterpret_cast<char*>(v.data()), std::streamsize(count * sizeof(T))));
}

// tests/data/quantize_4bit_cases.bin (found from this header's path); false when absent.
inline bool load_fixture_4bit(Fixture4bit& fx) {
  std::string dir = __FILE__;
  dir = dir.substr(0, dir.find_last_of("/\\"));  // tests/cpp
  std::ifstream f(dir + "/../data/quantize_4bit_cases.bin", std::ios::binary);
  if (!f) return false;
  char magic[4];
  uint32_t n = 0, cases = 0;
  if (!f.read(magic, 4) || std::memcmp(magic, "BNB4", 4) != 0 || !read_pod(f, n) || !read_array(f, fx.input, n) ||
      !read_pod(f, cases))
    return false;
  for (uint32_t c = 0; c < cases; ++c) {
    Fixture4bitCase fc;
    uint8_t len = 0, q = 0, t = 0;
    uint32_t bs = 0, count = 0;
    if (!read_pod(f, len)) return false;
    fc.name.resize(len);
    if (!f.read(fc.name.data(), len) || !read_pod(f, q) || !read_pod(f, t) || !read_pod(f, bs)) return false;
    fc.quant_type = QuantType4bit(q);
    fc.dtype = DType(t);
    fc.blocksize = bs;
    if (!read_pod(f, count) || !read_array(f, fc.packed, count)) return false;
    if (!read_pod(f, count) || !read_array(f, fc.absmax, count)) return false;
    if (!read_pod(f, count) || !read_array(f, fc.dequant, count)) return false;
    fx.cases.push_back(std::move(fc));
  }
  return true;
}

}  // namespace bnb_test
