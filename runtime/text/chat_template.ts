/**
 * Chat templates: the Jinja `chat_template` of a model's `tokenizer_config.json` (or its
 * `chat_template.jinja`), rendered with `@huggingface/jinja` with the variables Hugging Face's
 * `apply_chat_template` passes (`messages`, `add_generation_prompt`, the special tokens' texts).
 */

import { Environment, Interpreter, parse, Template, tokenize } from "npm:@huggingface/jinja@0.5.13";

/** Python's `str.strip(chars)`: `chars` is a set of characters; without it, whitespace goes. */
function stripChars(text: string, chars: unknown, left: boolean, right: boolean): string {
  if (typeof chars !== "string") {
    return left && right ? text.trim() : left ? text.trimStart() : text.trimEnd();
  }
  const set = new Set(chars);
  const cs = Array.from(text);
  let [start, end] = [0, cs.length];
  while (left && start < end && set.has(cs[start])) start++;
  while (right && end > start && set.has(cs[end - 1])) end--;
  return cs.slice(start, end).join("");
}

/**
 * @huggingface/jinja 0.5.13's string methods `strip`, `lstrip` and `rstrip` ignore their `chars`
 * argument and always trim whitespace, while Jinja2 (Python's `str` methods) strips exactly those
 * characters: Qwen3's template (`content.lstrip('\n')`) then drops a response's leading spaces.
 * This replaces the three methods with Python's semantics, once, for every template.
 */
function honourStripChars(): void {
  const sample = new Interpreter(new Environment()).run(parse(tokenize("x")));
  const proto = Object.getPrototypeOf(sample);
  const getter = Object.getOwnPropertyDescriptor(proto, "builtins")?.get;
  type Value = { value: unknown };
  type Builtins = Map<string, unknown>;
  const original = getter?.call(sample) as Builtins | undefined;
  const FunctionValue = original?.get("strip")?.constructor as
    | (new (fn: (args: Value[]) => Value) => unknown)
    | undefined;
  const StringValue = sample.constructor as new (value: string) => Value;
  if (!getter || !FunctionValue || typeof sample.value !== "string") {
    throw new Error("@huggingface/jinja: unexpected internals; update honourStripChars");
  }
  const patched = new WeakSet<Builtins>();
  Object.defineProperty(proto, "builtins", {
    configurable: true,
    get(this: Value) {
      const map = getter.call(this) as Builtins;
      if (!patched.has(map)) {
        const text = this.value as string;
        for (
          const [name, left, right] of [
            ["strip", true, true],
            ["lstrip", true, false],
            ["rstrip", false, true],
          ] as const
        ) {
          map.set(
            name,
            new FunctionValue((args) =>
              new StringValue(stripChars(text, args[0]?.value, left, right))
            ),
          );
        }
        patched.add(map);
      }
      return map;
    },
  });
}
honourStripChars();

/** One message of a conversation, as chat templates read it. */
export interface ChatMessage {
  /** "system", "user", "assistant" (or whatever roles the template knows). */
  role: string;
  /** The message text. */
  content: string;
  /** Further fields some templates read (e.g. `reasoning_content`, `tool_calls`). */
  [field: string]: unknown;
}

/** Options of `ChatTemplate.render`. */
export interface ChatRenderOptions {
  /** Append the header that opens the assistant's turn (default false). */
  addGenerationPrompt?: boolean;
  /** Further template variables, e.g. `{ enable_thinking: false }` for Qwen3. */
  variables?: Record<string, unknown>;
}

/** A conversation's last assistant turn split into what the model reads and what it writes. */
export interface ChatTurn {
  /** The conversation before the turn, with the generation prompt that opens it. */
  prompt: string;
  /** The assistant's text as the template writes it, through its end-of-turn text. */
  response: string;
}

/** What a `ChatTemplate` knows of its tokenizer. */
export interface ChatTemplateOptions {
  /**
   * Template variables for the special tokens (`bos_token`, `eos_token`, `pad_token`,
   * `unk_token`, …), as texts.
   */
  tokens?: Record<string, string | string[] | undefined>;
  /** Texts of the tokenizer's special tokens: the end of an assistant turn is found by them. */
  specialTokens?: readonly string[];
  /** Where the template came from, for error messages (default "chat_template"). */
  origin?: string;
}

/** A parsed chat template. */
export class ChatTemplate {
  /** The template's Jinja source. */
  readonly source: string;
  /** Where the template came from (a file path), for error messages. */
  readonly origin: string;
  /** The beginning-of-sequence token's text, if the tokenizer has one. */
  readonly bosToken?: string;
  private readonly template: Template;
  private readonly tokens: Record<string, string | string[]>;
  private readonly specials: readonly string[];

  /** Parses `source`; a syntax error names `origin`. */
  constructor(source: string, options: ChatTemplateOptions = {}) {
    this.origin = options.origin ?? "chat_template";
    if (typeof source !== "string" || source.trim() === "") {
      throw new Error(`${this.origin}: chat_template is empty or not a string`);
    }
    this.source = source;
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new Error(`${this.origin}: chat_template is not a valid template (${message(e)})`);
    }
    this.tokens = Object.fromEntries(
      Object.entries(options.tokens ?? {}).filter(([, v]) => v !== undefined),
    ) as Record<string, string | string[]>;
    const bos = this.tokens.bos_token;
    if (typeof bos === "string") this.bosToken = bos;
    this.specials = (options.specialTokens ?? []).filter((s) => s.length > 0);
  }

  /** The conversation as text: `apply_chat_template(messages, tokenize=False, …)`. */
  render(messages: readonly ChatMessage[], options: ChatRenderOptions = {}): string {
    messages.forEach((m, i) => {
      if (typeof m?.role !== "string" || typeof m.content !== "string") {
        throw new Error(
          `chat message ${i}: expected { role: string, content: string } (got ${
            JSON.stringify(m)
          })`,
        );
      }
    });
    try {
      return this.template.render({
        ...this.tokens,
        ...options.variables,
        messages,
        add_generation_prompt: options.addGenerationPrompt ?? false,
      });
    } catch (e) {
      throw new Error(`${this.origin}: chat_template failed to render (${message(e)})`);
    }
  }

  /**
   * Splits the conversation's last message, the assistant's, from what precedes it: `prompt` is
   * the conversation before it rendered with the generation prompt; `response` is the rest of the
   * whole conversation's rendering, cut after the first special token that follows the
   * assistant's content (the end-of-turn token, e.g. `<|im_end|>` or `<|eot_id|>`) and the
   * whitespace after it. Templates that write the next turn's header after every conversation
   * (Llama 3's first template) thus give the turn alone.
   */
  turn(
    messages: readonly ChatMessage[],
    options: Omit<ChatRenderOptions, "addGenerationPrompt"> = {},
  ): ChatTurn {
    const last = messages.at(-1);
    if (last?.role !== "assistant") {
      throw new Error(
        `chat: the last message must be the assistant's, the turn to train on (got ${
          last ? `role "${last.role}"` : "no messages"
        })`,
      );
    }
    const prompt = this.render(messages.slice(0, -1), { ...options, addGenerationPrompt: true });
    const whole = this.render(messages, { ...options, addGenerationPrompt: false });
    if (!whole.startsWith(prompt)) {
      throw new Error(
        `${this.origin}: chat_template: the conversation rendered with the assistant's message ` +
          "does not begin with the one rendered without it and add_generation_prompt, so the " +
          "prompt and the response cannot be told apart",
      );
    }
    const tail = whole.slice(prompt.length);
    const content = last.content.trim();
    const at = content ? tail.indexOf(content) : -1;
    const from = at < 0 ? 0 : at + content.length;
    let start = -1, end = -1;
    for (const s of this.specials) {
      const i = tail.indexOf(s, from);
      if (i >= 0 && (start < 0 || i < start || (i === start && i + s.length > end))) {
        [start, end] = [i, i + s.length];
      }
    }
    if (start < 0) return { prompt, response: tail };
    while (end < tail.length && /\s/.test(tail[end])) end++;
    return { prompt, response: tail.slice(0, end) };
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
