// Text generation over the Open Inference Protocol (KServe v2), as Triton's LLM backends (vLLM and
// TensorRT-LLM) shape it. Every input tensor and request parameter is one this file names: any
// other name is INVALID_ARGUMENT naming it, as Triton answers for a tensor its model does not
// declare.
//   inputs   text_input  BYTES, one element (shape [1] or [1, 1]): the prompt, BOS prepended.
//            Optional one-element inputs: max_tokens, top_k, end_id, pad_id, beam_width
//            (integers), temperature, top_p, repetition_penalty, presence_penalty,
//            frequency_penalty (numbers), seed or random_seed (integers), ignore_eos, stream,
//            exclude_input_in_output (BOOL); any integer or float datatype is read as the number
//            it holds.
//              sampling_parameters  BYTES, one element: a JSON object of vLLM SamplingParams keys
//                (the vLLM backend's input): temperature, top_p, min_p, presence_penalty,
//                frequency_penalty, repetition_penalty (numbers), top_k (-1 or 0: off),
//                max_tokens, seed (integers), ignore_eos (bool), stop (a string or a list of
//                strings), stop_token_ids (a list of integers), n (1 only); numbers and bools may
//                also be given as strings ("0.5", "true"), as the vLLM backend's examples send
//                them; null means the key's default. Any other key is refused naming it,
//                and logprobs and prompt_logprobs unless null (no output tensor carries them).
//              stop_words  BYTES, any number of elements: stop strings (TensorRT-LLM's input;
//                empty elements are skipped, as its preprocessing does); bad_words: refused
//                unless every element is empty (no banned-word sampling here).
//              end_id  a token id that ends generation (its text included), as a stop token id;
//                -1: none. pad_id: accepted, no effect (it pads TensorRT-LLM's batches).
//                beam_width: 1 only.
//              stream  on ModelStreamInfer, false: one response carrying the whole text;
//                true or absent: a response per new piece of text (absent: sparsed's default,
//                which differs from the vLLM backend's non-streaming default). ModelInfer always
//                answers once.
//              exclude_input_in_output  false: text_output starts with the prompt (in a stream,
//                the first response; the vLLM backend's default); true or absent: the
//                completion only (sparsed's default, kept: clients of earlier versions read
//                text_output as the completion). false with stream true is refused, as the vLLM
//                backend refuses it.
//   request  parameters max_tokens, temperature, top_p, top_k, min_p, repetition_penalty,
//            presence_penalty, frequency_penalty, seed, random_seed (numbers), ignore_eos
//            (bool), stop (a string), priority (an integer), cache_salt (a string: the
//            prefix-cache partition) and triton_enable_empty_final_response (bool, streams);
//            any other parameter is refused naming it. Precedence, per key: request parameters
//            over sampling_parameters over the one-element inputs; stop strings and stop token ids
//            from every source are kept together. The request id is echoed.
//   output   text_output BYTES [1]: the generated text (in a stream, the text since the last
//            response), in raw_output_contents (4-byte little-endian length, then the bytes). A
//            request may ask for text_output only (or name no outputs).
// Every malformed request is INVALID_ARGUMENT naming the tensor, key or parameter and what it must
// be. Range checks that need the model (stop token ids against the vocabulary, sampling ranges)
// are ToRequest's (server/convert.h), which every request passes through on submission.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "inference/inference.pb.h"
#include "sparsed/v1/sparsed.pb.h"

namespace sparsed::server {

inline constexpr char kTextInput[] = "text_input";
inline constexpr char kTextOutput[] = "text_output";

// NOT_FOUND unless `name` is the served model's (an empty name means it too).
absl::Status CheckModelName(const std::string& name, const std::string& served);
// As CheckModelName, and NOT_FOUND unless `version` is empty or "1" (the one version served).
absl::Status CheckModel(const std::string& name, const std::string& version,
                        const std::string& served);

// A ModelInferRequest as the service runs it.
struct OipRequest {
  v1::GenerateRequest generate;
  bool echo_prompt = false;  // text_output starts with the prompt (exclude_input_in_output false)
  bool stream = true;        // ModelStreamInfer: a response per piece (false: one response)
};

absl::StatusOr<OipRequest> ParseInferRequest(const inference::ModelInferRequest& in);
// ParseInferRequest's GenerateRequest alone.
absl::StatusOr<v1::GenerateRequest> FromInferRequest(const inference::ModelInferRequest& in);

// A response carrying `text` as text_output. `final` (streams) sets the triton_final_response
// parameter Triton's clients read to know a decoupled request is complete.
inference::ModelInferResponse TextResponse(const std::string& model, const std::string& id,
                                           const std::string& text, bool final);

// The model's tensors, for ModelMetadata: every input above (its canonical datatype) and
// text_output.
void DescribeModel(const std::string& model, inference::ModelMetadataResponse* out);

// The model's configuration as Triton reports a decoupled LLM model's (ModelConfig): name,
// platform and backend "sparsed", max_batch_size 0 (no batch dimension), the same inputs (all
// optional but text_input) and output as DescribeModel, model_transaction_policy.decoupled.
void DescribeModelConfig(const std::string& model, inference::ModelConfig* out);

}  // namespace sparsed::server
