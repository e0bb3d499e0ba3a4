/**
 * `cohesix completion bash|zsh`: shell completion scripts made from the
 * verb declarations: verbs, sub-verbs, options and their choices; files
 * otherwise.
 * @module
 */
import type { Verb } from "./verb.ts";

interface Words {
  /** `ls`, `image verify`. */
  readonly key: string;
  readonly subverbs: string[];
  readonly options: string[];
  /** Option → its choices. */
  readonly choices: Record<string, readonly string[]>;
}

function collect(verbs: readonly Verb[], prefix: string[] = []): Words[] {
  const out: Words[] = [];
  for (const v of verbs) {
    if (v.hidden) continue;
    const path = [...prefix, v.name];
    const options: string[] = ["--help"];
    const choices: Record<string, readonly string[]> = {};
    for (const [name, o] of Object.entries(v.options ?? {})) {
      options.push(`--${name}`);
      if (o.short) options.push(`-${o.short}`);
      if (o.choices) {
        choices[`--${name}`] = o.choices;
        if (o.short) choices[`-${o.short}`] = o.choices;
      }
    }
    out.push({ key: path.join(" "), subverbs: (v.subverbs ?? []).filter((s) => !s.hidden).map((s) => s.name), options, choices });
    if (v.subverbs) out.push(...collect(v.subverbs, path));
  }
  return out;
}

const q = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`;

/**
 * The bash script: `source <(cohesix completion bash)`.
 *
 * @example
 * ```ts
 * bashCompletion(VERBS).includes("complete -o default -F _cohesix cohesix"); // true
 * ```
 */
export function bashCompletion(verbs: readonly Verb[]): string {
  const all = collect(verbs);
  const top = [...verbs.filter((v) => !v.hidden).map((v) => v.name), "help", "completion"];
  const cases: string[] = [];
  for (const w of all) {
    const choiceCases = Object.entries(w.choices).map(([opt, c]) => `        ${opt}) COMPREPLY=($(compgen -W ${q(c.join(" "))} -- "$cur")); return ;;`);
    cases.push(
      `    ${q(w.key)})`,
      `      subs=${q(w.subverbs.join(" "))}; opts=${q(w.options.join(" "))}`,
      ...(choiceCases.length ? ["      case \"$prev\" in", ...choiceCases, "      esac"] : []),
      "      ;;",
    );
  }
  return `# cohesix completion for bash: source <(cohesix completion bash)
_cohesix() {
  local cur prev key subs opts i
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W ${q(top.join(" "))} -- "$cur"))
    return
  fi
  key="\${COMP_WORDS[1]}"
  if [ "$key" = help ]; then
    COMPREPLY=($(compgen -W ${q(top.join(" "))} -- "$cur")); return
  fi
  if [ "$key" = completion ]; then
    COMPREPLY=($(compgen -W 'bash zsh' -- "$cur")); return
  fi
  # A sub-verb (image verify, vm pause) extends the key when it is the second word.
  i=2
  subs=""; opts=""
  while :; do
    case "$key" in
${cases.join("\n")}
      *) return ;;
    esac
    if [ "$i" -lt "$COMP_CWORD" ] && [[ " $subs " == *" \${COMP_WORDS[i]} "* ]]; then
      key="$key \${COMP_WORDS[i]}"; i=$((i + 1)); continue
    fi
    break
  done
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  elif [ "$i" -eq "$COMP_CWORD" ] && [ -n "$subs" ]; then
    COMPREPLY=($(compgen -W "$subs" -- "$cur"))
  fi
}
complete -o default -F _cohesix cohesix
`;
}

/**
 * The zsh script: `source <(cohesix completion zsh)` (after `compinit`), or
 * saved as `_cohesix` on `$fpath`.
 *
 * @example
 * ```ts
 * zshCompletion(VERBS).startsWith("#compdef cohesix"); // true
 * ```
 */
export function zshCompletion(verbs: readonly Verb[]): string {
  const all = collect(verbs);
  const summaries = verbs.filter((v) => !v.hidden).map((v) => q(`${v.name}:${v.summary.replace(/:/g, "\\:")}`));
  const cases: string[] = [];
  for (const w of all) {
    const choiceCases = Object.entries(w.choices).map(([opt, c]) => `        ${opt}) compadd -- ${c.map(q).join(" ")}; return ;;`);
    cases.push(
      `    ${q(w.key)})`,
      `      subs=(${w.subverbs.map(q).join(" ")}); opts=(${w.options.map(q).join(" ")})`,
      ...(choiceCases.length ? ["      case \"$prev\" in", ...choiceCases, "      esac"] : []),
      "      ;;",
    );
  }
  return `#compdef cohesix
# cohesix completion for zsh: source <(cohesix completion zsh)
_cohesix() {
  local -a verbs subs opts
  local key prev cur i
  verbs=(${summaries.join(" ")} 'help:a command'"'"'s options and examples' 'completion:a shell completion script')
  cur="\${words[CURRENT]}"
  prev="\${words[CURRENT-1]}"
  if (( CURRENT == 2 )); then
    _describe 'command' verbs
    return
  fi
  key="\${words[2]}"
  if [[ $key == help ]]; then _describe 'command' verbs; return; fi
  if [[ $key == completion ]]; then compadd bash zsh; return; fi
  i=3
  while :; do
    subs=(); opts=()
    case "$key" in
${cases.join("\n")}
      *) _files; return ;;
    esac
    if (( i < CURRENT )) && (( \${subs[(Ie)\${words[i]}]} )); then
      key="$key \${words[i]}"; (( i++ )); continue
    fi
    break
  done
  if [[ $cur == -* ]]; then
    compadd -- $opts
  elif (( i == CURRENT )) && (( \${#subs} )); then
    compadd -- $subs
  else
    _files
  fi
}
if [[ "\${zsh_eval_context[-1]}" == loadautofunc ]]; then
  _cohesix "$@"
else
  compdef _cohesix cohesix
fi
`;
}
