# Drives zsh's completion system in a pseudo-terminal and prints, for
# each line given as an argument, the candidates zsh offers at its end,
# sorted, separated by spaces, one output line per input line.
#
#   zsh tests/lib/zsh_complete.zsh FPATH-DIR 'bastion-stdio -o Log' ...
#
# ^D runs list-choices, which lists without changing the line, followed
# by a mark; compadd is wrapped to print each candidate between << and >>.

zmodload zsh/zpty || exit 2
dir=$1
shift
zpty z zsh -f -i || exit 2
zpty -w z "PS1='%% '; fpath=(${(q)dir} \$fpath)"
zpty -w z 'autoload -Uz compinit && compinit -u -D'
zpty -w z 'compadd() { local -a __h; local __x; builtin compadd -O __h "$@"
  for __x in $__h; do print -rn -- "<<$__x>>"; done; builtin compadd "$@"; }'
zpty -w z '_t_list() { _main_complete; print -rn -- "@@DONE@@"; }
  zle -C t-list list-choices _t_list; bindkey "^D" t-list'
# the marker's output, not its echo: X1Y
found=()
zpty -w z 'print X$((0 + 1))Y'
zpty -r -m z REPLY '*X1Y*' || exit 3

for line in "$@"; do
	zpty -w -n z "$line"$'\x04'
	zpty -r -m z REPLY '*@@DONE@@*' || exit 3
	found=()
	while [[ $REPLY == *'<<'*'>>'* ]]; do
		REPLY=${REPLY#*<<}
		found+=("${REPLY%%>>*}")
		REPLY=${REPLY#*>>}
	done
	print -r -- "${(j: :)${(@ou)found}}"
	zpty -w -n z $'\x15'
done
zpty -d z
