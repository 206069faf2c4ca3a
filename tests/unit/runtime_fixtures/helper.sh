echo "script in $(pwd)"
echo "arg count $#"
