// Keeps every stage library non-empty while its files are being written.
typedef int nnc_empty_translation_unit;
