#pragma once
// Control of the host cuBLAS stub (cublas_stub.cpp).
namespace hbt_emu {

// What cublasGemmEx does with C when beta is 0 (cuBLAS: "C does not have to be a valid input").
enum class BetaZero {
  kSpecification,  // C is not read
  kPessimistic,    // C is first filled with NaN; then not read when beta came from the host,
                   // but multiplied by a device-side beta (0 * NaN = NaN): a result that needs
                   // cuBLAS to skip C for a zero it reads on the device fails
};

void set_beta_zero_mode(BetaZero mode);

}  // namespace hbt_emu
