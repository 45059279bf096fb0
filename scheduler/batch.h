// The plain description of one engine step, handed from the scheduler to the engine.
// Page tables are CSR, as in FlashInfer: sequence s's blocks are
// block_table[block_table_indptr[s] .. block_table_indptr[s+1]), all int32.
#ifndef KVASIR_SCHEDULER_BATCH_H_
#define KVASIR_SCHEDULER_BATCH_H_

#include <cstdint>
#include <vector>

namespace kvasir {

struct ScheduledSequence {
  uint64_t uid = 0;            // Sequence::uid
  int32_t start_position = 0;  // position of the first token computed this step
  int32_t num_new_tokens = 0;  // tokens computed this step (a prefill chunk, or 1 for a decode)
  bool samples = false;        // this step reaches the sequence's last token: sample the next
  // Logit rows of prompt positions before the last (Sequence::needs_prompt_logits): positions
  // start_position .. start_position + num_prompt_logit_rows - 1; they precede the sample row.
  int32_t num_prompt_logit_rows = 0;
};

struct StepBatch {
  std::vector<ScheduledSequence> seqs;  // [num_seqs]
  // Per token, sequences back to back:      [num_tokens]
  std::vector<int32_t> token_ids;
  std::vector<int32_t> positions;
  std::vector<int64_t> slot_mapping;  // block * block_size + offset: where its K/V go
  // Per sequence:
  std::vector<int32_t> query_start;         // [num_seqs + 1] offsets into the token arrays
  std::vector<int32_t> seq_lens;            // [num_seqs] context length after this step
  std::vector<int32_t> block_table_indptr;  // [num_seqs + 1]
  std::vector<int32_t> block_table;         // [block_table_indptr[num_seqs]]
  // Token rows whose logits are needed, in seqs order: per sequence its prompt logit rows, then
  // the last token's row when it samples.
  std::vector<int32_t> logits_indices;

  int32_t num_seqs() const { return static_cast<int32_t>(seqs.size()); }
  int32_t num_tokens() const { return static_cast<int32_t>(token_ids.size()); }
  bool empty() const { return seqs.empty(); }
};

}  // namespace kvasir

#endif  // KVASIR_SCHEDULER_BATCH_H_
