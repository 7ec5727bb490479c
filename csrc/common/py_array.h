// NumPy helpers shared by the bindings.
#pragma once

#include <pybind11/numpy.h>

namespace lanner {

// True when `a` holds elements of type T in native byte order. Compares dtypes by value
// (NumPy's PyArray_EquivTypes), not by identity: an array that went through pickle (a
// multiprocessing queue, a saved file) has a dtype equal to, but not the same object as,
// NumPy's canonical one.
template <typename T>
inline bool has_dtype(const pybind11::array& a) {
  return pybind11::isinstance<pybind11::array_t<T>>(a);
}

}  // namespace lanner
