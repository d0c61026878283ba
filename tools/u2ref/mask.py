"""Masks, as WeNet HEAD builds them (true = attend / valid)."""

import torch


def make_pad_mask(lengths, max_len=0):
    """(B,) lengths -> (B, max_len) bool, True at padded positions."""
    batch = lengths.size(0)
    max_len = max_len if max_len > 0 else int(lengths.max().item())
    seq = torch.arange(0, max_len, dtype=torch.int64, device=lengths.device)
    seq = seq.unsqueeze(0).expand(batch, max_len)
    return seq >= lengths.unsqueeze(-1)


def make_non_pad_mask(lengths, max_len=0):
    return ~make_pad_mask(lengths, max_len)


def subsequent_mask(size, device=torch.device("cpu")):
    """(size, size) lower-triangular bool mask (decoder self-attention)."""
    arange = torch.arange(size, device=device)
    return arange.expand(size, size) <= arange.unsqueeze(-1)


def subsequent_chunk_mask(size, chunk_size, num_left_chunks=-1, device=torch.device("cpu")):
    """Row i may see columns [start, end): end = min((i//C+1)*C, size),
    start = 0 if left < 0 else max((i//C - left)*C, 0)."""
    ret = torch.zeros(size, size, device=device, dtype=torch.bool)
    for i in range(size):
        if num_left_chunks < 0:
            start = 0
        else:
            start = max((i // chunk_size - num_left_chunks) * chunk_size, 0)
        ending = min((i // chunk_size + 1) * chunk_size, size)
        ret[i, start:ending] = True
    return ret


def add_optional_chunk_mask(xs, masks, use_dynamic_chunk, use_dynamic_left_chunk,
                            decoding_chunk_size, static_chunk_size, num_decoding_left_chunks,
                            enable_full_context=True, max_chunk_size=25):
    """WeNet's add_optional_chunk_mask. decoding_chunk_size == 0 with dynamic chunk = the random
    training chunk (uses torch's global RNG exactly as WeNet does)."""
    if use_dynamic_chunk:
        max_len = xs.size(1)
        if decoding_chunk_size < 0:
            chunk_size = max_len
            num_left_chunks = -1
        elif decoding_chunk_size > 0:
            chunk_size = decoding_chunk_size
            num_left_chunks = num_decoding_left_chunks
        elif max_len < 2:  # WeNet's randint(1, 1) would raise; one frame = full context
            chunk_size = max_len
            num_left_chunks = -1
        else:
            chunk_size = torch.randint(1, max_len, (1,)).item()
            num_left_chunks = -1
            if chunk_size > max_len // 2 and enable_full_context:
                chunk_size = max_len
            else:
                chunk_size = chunk_size % max_chunk_size + 1
                if use_dynamic_left_chunk:
                    max_left_chunks = (max_len - 1) // chunk_size
                    num_left_chunks = torch.randint(0, max_left_chunks, (1,)).item()
        chunk_masks = subsequent_chunk_mask(xs.size(1), chunk_size, num_left_chunks, xs.device)
        chunk_masks = masks & chunk_masks.unsqueeze(0)
    elif static_chunk_size > 0:
        chunk_masks = subsequent_chunk_mask(xs.size(1), static_chunk_size,
                                            num_decoding_left_chunks, xs.device)
        chunk_masks = masks & chunk_masks.unsqueeze(0)
    else:
        chunk_masks = masks
    return chunk_masks
