// NumPy array checks shared by every binding: one wording, "<name> should ..., got ...",
// TypeError (pybind11::type_error) for a non-array, ValueError (std::invalid_argument) for an
// array of the wrong kind. Generic over the element type, so any op's bindings can use them.
#pragma once

#include <pybind11/numpy.h>

#include <cstdint>
#include <string>

#include "common/check.h"

namespace lanner {

// True when `a` holds elements of type T in native byte order. Compares dtypes by value
// (NumPy's PyArray_EquivTypes), not by identity: an array that went through pickle (a
// multiprocessing queue, a saved file) has a dtype equal to, but not the same object as,
// NumPy's canonical one.
template <typename T>
inline bool has_dtype(const pybind11::array& a) {
  return pybind11::isinstance<pybind11::array_t<T>>(a);
}

// NumPy's name of T's dtype ("float32", "uint8", ...), for messages.
template <typename T>
inline std::string dtype_name() {
  return pybind11::str(pybind11::dtype::of<T>()).cast<std::string>();
}

// The Python type name of any object ("list", "NoneType", ...), for messages.
inline std::string type_name(pybind11::handle obj) {
  return pybind11::str(pybind11::type::of(obj).attr("__name__")).cast<std::string>();
}

// `a`'s shape as Python writes it: "(1, 4, 2)", "(5,)", "()".
inline std::string shape_string(const pybind11::array& a) {
  std::string out = "(";
  for (pybind11::ssize_t i = 0; i < a.ndim(); ++i) out += (i ? ", " : "") + std::to_string(a.shape(i));
  return out + (a.ndim() == 1 ? ",)" : ")");
}

// ValueError unless `a` has element type T.
template <typename T>
inline void require_dtype(const pybind11::array& a, const char* name) {
  LANNER_CHECK(has_dtype<T>(a), name, " should have dtype ", dtype_name<T>(), ", got ",
               pybind11::str(a.dtype()).cast<std::string>());
}

// ValueError unless `a` is C-contiguous (the kernels read it as one dense block).
inline void require_c_contiguous(const pybind11::array& a, const char* name) {
  LANNER_CHECK((a.flags() & pybind11::array::c_style) != 0, name,
               " should be C-contiguous (use numpy.ascontiguousarray)");
}

// `obj` as a numpy.ndarray of element type T in any layout: TypeError when it is not an
// ndarray, ValueError for another dtype. For bindings that copy strided input themselves.
template <typename T>
inline pybind11::array require_typed_array(pybind11::handle obj, const char* name) {
  if (!pybind11::isinstance<pybind11::array>(obj)) {
    throw pybind11::type_error(std::string(name) + " should be a numpy.ndarray of " + dtype_name<T>() + ", got " +
                               type_name(obj));
  }
  auto arr = pybind11::reinterpret_borrow<pybind11::array>(obj);
  require_dtype<T>(arr, name);
  return arr;
}

// `obj` as a C-contiguous numpy.ndarray of element type T: TypeError when it is not an
// ndarray, ValueError for another dtype or a non-contiguous layout.
template <typename T>
inline pybind11::array require_array(pybind11::handle obj, const char* name) {
  auto arr = require_typed_array<T>(obj, name);
  require_c_contiguous(arr, name);
  return arr;
}

}  // namespace lanner
