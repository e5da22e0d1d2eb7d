#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/strings.json: the golden test strings (a JSON list).

Deterministic (no randomness): rerunning it gives the same file. The goldens
(tools/make_tokenizer_goldens.py, tools/js_goldens.mjs) read the JSON, not this script.
"""
import json
import os

SEED = [
    "The Amazon rainforest produces approximately 20 percent of the world's oxygen. It covers over "
    "5.5 million square kilometers and is home to roughly 10 percent of all species on Earth.",
    "how much oxygen does the amazon produce",
    "approximately 20 percent",
    "Document:\nThe quick brown fox",
    "Some prefix text ",
    "Document:\nelectric",
    "an ",
    "This document may be relevant to queries like: how much oxygen\n\n",
    "\n\nQuery: how much oxygen does the amazon produce\nAnswer:",
]

S = list(SEED)
# Seed-style compositions (prefix + document + query) and prefixes of them.
doc = SEED[0]
S += [
    "Document:\n" + doc,
    "Document:\n" + doc + "\n\nQuery: how much oxygen does the amazon produce\nAnswer:",
    "This document may be relevant to queries like: how much oxygen\n\nDocument:\n" + doc,
    "Some prefix text Document:\nelectric",
    "Some prefix text " + doc,
    doc[:37], doc[:38], doc[:60], doc[:61],
    "an electric", "an  electric", "anelectric",
]
# Empty / whitespace.
S += ["", " ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r\n\r\n", "\r", " \n ",
      "\t \n", " \t\n\r\n ", "a\tb", "a\t\tb", "a \tb", "a\n\tb", "line1\r\nline2\r\n",
      "word   word", "word    \n   word", "   leading", "trailing   ", "  both  ", " x", "x ",
      "\u00a0", "a\u00a0b", "\u3000", "a\u3000b", "\u2009thin", "x\u200by", "\u0085", "a\u0085b",
      "\u2028", "\ufeffBOM", "\u000b\u000c", "a \n\n b", "    def f():\n        return 1\n"]
# Accents (composed and decomposed), Latin.
S += ["café", "cafe\u0301", "naïve", "nai\u0308ve", "Ångström", "A\u030angstro\u0308m", "\u212b",
      "résumé", "façade", "Øresund", "straße", "STRASSE", "Ελληνικά", "Кириллица", "Привет, мир!",
      "Zürich Müller", "ﬁ ligature", "œuvre", "Ça va? Très bien!", "e\u0301\u0301", "a\u0323\u0302",
      "\u1e69", "s\u0323\u0307", "q\u0307\u0323", "Tiếng Việt có dấu", "İstanbul ığdır",
      "Ωmega ohm \u2126", "Å", "ﬀ", "①②③", "x²+y³", "½ ¼", "ＡＢＣ全角", "ｶﾀｶﾅ"]
# CJK, Korean, Thai, Devanagari.
S += ["你好，世界！", "中文分词测试", "日本語のテキストです。", "カタカナとひらがな", "漢字", "한국어 텍스트",
      "\u1100\u1161\u11a8", "안녕하세요", "ภาษาไทย", "हिन्दी भाषा", "தமிழ்", "Mixed 中文 and English",
      "数字123和字母abc", "《书名》「引号」", "一二三四五六七八九十", "我爱北京天安门。",
      "こんにちは、世界", "東京タワー"]
# Emoji.
S += ["🙂", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "👩🏽‍💻 coding", "🇺🇸🇫🇷", "❤️", "🦙 llama", "emoji🙂inline",
      "🙂🙂🙂", "🤖 robots 🤖", "a👍b", "☃", "⌘+C", "1️⃣", "🧑‍🚀", "👁️‍🗨️", "🫠"]
# Right-to-left.
S += ["مرحبا بالعالم", "العربية", "שלום עולם", "עברית", "Hello مرحبا mixed", "١٢٣ ٤٥٦", "۱۲۳",
      "\u200fRTL mark", "abc\u202edef", "فارسی زبان"]
# Digits and numbers.
S += ["0", "7", "42", "123", "1234", "12345", "123456789", "1234567890123456789", "3.14159",
      "1,000,000", "1.000.000,00", "$100", "€50.99", "-273.15", "1e10", "0x1F", "2024-01-15",
      "12:30:45", "+1 (555) 123-4567", "99%", "v1.2.3", "3rd 21st 100th", "10000000000000000000000",
      "x1y2z3", "1 2 3 4 5", "٣", "१२३", "pi=3.14"]
# Contractions.
S += ["it's", "don't", "we're", "I've", "I'm", "you'll", "he'd", "IT'S", "DON'T", "WE'RE", "I'VE",
      "I'M", "YOU'LL", "HE'D", "It'S", "can't won't shouldn't", "'s", "'t", "'re", "''", "'",
      "rock 'n' roll", "the dog's bone", "the dogs' bones", "O'Neil", "it’s curly", "y'all'd've",
      "'hello'", "\"quoted\"", "she said 'hi'"]
# Punctuation, symbols, code.
S += ["Hello, world!", "Hello world", "hello world", "HELLO WORLD", "Hello.World", "a-b_c",
      "...", "!!!", "???", "?!", "()", "[]{}", "<>", "a < b > c", "x => y", "a == b", "a != b",
      "#include <stdio.h>", "int main() { return 0; }", "def f(x):\n    return x * 2",
      "SELECT * FROM t WHERE x = 1;", "https://example.com/path?q=1&r=2#frag", "user@example.com",
      "C:\\Windows\\System32", "/usr/local/bin", "~/.bashrc", "$HOME", "@mention #hashtag",
      "**bold** _italic_ `code`", "| a | b |\n|---|---|", "<div class=\"x\">text</div>",
      "{\"key\": \"value\", \"n\": [1, 2, 3]}", "a/b\\c", "--flag=value", "x++ ++y", "a&&b||c",
      "©®™", "§¶†‡", "°C °F", "←↑→↓", "∑∫∂√∞", "α+β=γ", "…", "—dash–", "«guillemets»", "„quotes“"]
# Special tokens inside text (all four vocabularies).
SPECIAL = ["<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
           "<|start_header_id|>", "<|end_header_id|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>",
           "<think>", "</think>", "<tool_call>", "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>",
           "<pad>", "<mask>", "<unused0>", "<start_of_image>"]
for t in SPECIAL:
    S += [t, "Hello " + t + " world", t + "Hello", "Hello" + t, " " + t + " "]
S += ["<s><s></s>", "<s> <s>", "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
      "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n", "<bos><start_of_turn>user",
      "<s", "s>", "<|im_start", "im_start|>", "< s >", "<<s>>", "<S>", "<|IM_START|>"]
# Metaspace / byte fallback corner cases.
S += ["▁", "▁▁", " ▁", "▁ ", "a▁b", "▁hello", "hello▁", "▁▁▁world", "<0x41>", "<0xE2>", "\u0000",
      "a\u0000b", "\u0001\u0002\u0003", "\u007f", "\u0080", "\ufffd", "\U0001f600\U0001f601",
      "\U00010000", "\U0010fffd", "\ue000 private use", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟙𝟚𝟛", "Ǆ ǅ ǆ"]
# Case, long words, repetition.
S += ["a", "A", "ab", "abc", "The", "the", " the", "THE", "supercalifragilisticexpialidocious",
      "Pneumonoultramicroscopicsilicovolcanoconiosis", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      "ababababababababababab", "the the the the the", "!!!!!!!!!!!!!!!!!!!!", "=" * 64, "-" * 50,
      "#" * 30, " " * 17, "\n" * 9, "\t" * 6, "0" * 40, "ha" * 25, "😀" * 10, "中" * 20,
      "CamelCaseIdentifier", "snake_case_identifier", "kebab-case-identifier", "ALLCAPSWORD",
      "MiXeD CaSe WoRdS", "iPhone", "McDonald's", "e.g. i.e. etc.", "U.S.A.", "Dr. Smith"]
# Sentences and paragraphs.
S += [
    "The quick brown fox jumps over the lazy dog.",
    "Pack my box with five dozen liquor jugs!",
    "In 1492, Columbus sailed the ocean blue.",
    "She sells sea shells by the sea shore; the shells she sells are surely seashells.",
    "To be, or not to be: that is the question.",
    "Machine learning models tokenize text into subword units before processing it.",
    "The KV cache stores keys and values for every layer, head and position.",
    "Question: What is the capital of France?\nAnswer: Paris.",
    "1. First item\n2. Second item\n3. Third item",
    "- bullet one\n- bullet two\n  - nested bullet",
    "Dear Sir or Madam,\n\nI am writing to inform you...\n\nSincerely,\nJohn",
    "Temperature: 23.5°C (74.3°F), humidity 45%, wind 10 km/h NNE.",
    "Il était une fois une petite fille qui vivait dans la forêt.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "El niño comió una manzana y después jugó al fútbol.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "敏捷的棕色狐狸跳过了懒狗。",
    "素早い茶色の狐が怠け者の犬を飛び越える。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "השועל החום המהיר קופץ מעל הכלב העצלן.",
    "Γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλικο σκύλο.",
    "The price is $1,234.56 (incl. 20% VAT) — payable by 2024-12-31.",
    "Emoji test: 🎉🎊 party time! 🥳 Let's go 🚀🚀🚀",
    "Mixed: English, 中文, العربية, עברית, русский, 日本語, 한국어 and emoji 🌍.",
    "   Indented text with trailing spaces   \n\tand a tab line\n",
    "Line one\r\nLine two\r\n\r\nLine four",
    "Ends with newline\n",
    "Multiple\n\n\n\nnewlines",
    "Spaces  between   words    grow     longer",
]
S += ["prefix " + "x" * n for n in (1, 2, 3)]

seen = set()
out = []
for s in S:
    if s not in seen:
        seen.add(s)
        out.append(s)
assert len(out) >= 300, len(out)
path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "tokenizer", "strings.json")
with open(path, "w", encoding="utf-8") as f:
    json.dump(out, f, ensure_ascii=False, indent=0)
    f.write("\n")
print(f"{len(out)} strings -> {os.path.normpath(path)}")
